//! Golden tests of the layout algebra: worked examples from the PTX ISA's fragment tables, the
//! Tilus paper's layouts and the linear-layout literature, pinned value by value (PTX fragment formulas, Tilus mappings, divisions, canonical forms, swizzle
//! tables, the linear-layout examples).

use SpatialEntry::{Mode, Replicate};
use tl_compiler::layout::analysis::{
    bank_wavefronts, classify_conversion_brute_force, shared_access_wavefronts, shared_access_wavefronts_f2,
    vector_width_brute_force,
};
use tl_compiler::layout::{
    ConversionKind, F2Layout, RegisterLayout, SharedLayout, SpatialEntry, Swizzle, classify_conversion,
    vector_width,
};

fn local(s: &[usize]) -> RegisterLayout {
    RegisterLayout::local(s).unwrap()
}
fn spatial(s: &[usize]) -> RegisterLayout {
    RegisterLayout::spatial(s).unwrap()
}
fn mul(a: &RegisterLayout, b: &RegisterLayout) -> RegisterLayout {
    a.product(b).unwrap()
}

/// `local(2,1).spatial(8,4).local(1,2)`: the m16n8 f32 accumulator of `mma.sync`.
fn mma_c() -> RegisterLayout {
    local(&[2, 1]).with_spatial(&[8, 4]).unwrap().with_local(&[1, 2]).unwrap()
}

#[test]
fn tilus_doc_mapping_example() {
    // shape [4,6], modes [2,2,3,2], spatial [0,2], local [3,1]:
    // thread = (i/2)*3 + j/2, local = (j%2)*2 + i%2.
    let l = RegisterLayout::from_modes(&[4, 6], &[vec![2, 2], vec![3, 2]], &[Mode(0), Mode(2)], &[3, 1]).unwrap();
    assert_eq!(l.mode_shape(), &[2, 2, 3, 2]);
    assert_eq!(l.spatial_modes(), &[Mode(0), Mode(2)]);
    assert_eq!(l.local_modes(), &[3, 1]);
    assert_eq!((l.num_threads(), l.local_size(), l.replication()), (6, 4, 1));
    for i in 0..4 {
        for j in 0..6 {
            let (t, loc) = ((i / 2) * 3 + j / 2, (j % 2) * 2 + i % 2);
            assert_eq!(l.owners(&[i, j]), vec![(t, loc)]);
            assert_eq!(l.coord(t, loc), Some(vec![i, j]));
        }
    }
    assert_eq!(l.to_string(), "layout(shape=[4, 6], modes=[2, 2, 3, 2], spatial=[0, 2], local=[3, 1])");
}

#[test]
fn local_3_4_spatial_2_3() {
    let l = local(&[3, 4]).with_spatial(&[2, 3]).unwrap();
    assert_eq!(l.shape(), &[6, 12]);
    assert_eq!(l.mode_shape(), &[3, 2, 4, 3]);
    assert_eq!(l.spatial_modes(), &[Mode(1), Mode(3)]);
    assert_eq!(l.local_modes(), &[0, 2]);
    assert_eq!(l.owners(&[4, 7]), vec![(1, 10)]);
    assert_eq!(l.local_of(&[4, 7]), Some(10));
}

#[test]
fn mma_m16n8_accumulator_matches_ptx() {
    let c = mma_c();
    assert_eq!(c.mode_shape(), &[2, 8, 4, 2]);
    assert_eq!(c.spatial_modes(), &[Mode(1), Mode(2)]);
    assert_eq!(c.local_modes(), &[0, 3]);
    assert_eq!((c.num_threads(), c.local_size()), (32, 4));
    for lane in 0..32 {
        for i in 0..4 {
            // PTX ISA, mma.m16n8 f32 accumulators: row = groupID + 8*(i/2), col = 2*tig + i%2.
            let want = vec![lane / 4 + 8 * (i / 2), 2 * (lane % 4) + i % 2];
            assert_eq!(c.coord(lane, i), Some(want.clone()), "lane {lane} i {i}");
            assert_eq!(c.owners(&want), vec![(lane, i)]);
        }
    }
    // Written as the product local(2, 1) * spatial(8, 4) * local(1, 2).
    assert_eq!(local(&[2, 1]).with_spatial(&[8, 4]).unwrap().with_local(&[1, 2]).unwrap(), c);
}

#[test]
fn mma_m16n8k16_operand_fragments_match_ptx() {
    // A (16x16 f16): column_local(2,2).spatial(8,4).local(1,2);
    // PTX: row = groupID + 8*((i/2)%2), col = 2*tig + i%2 + 8*(i/4).
    let a = RegisterLayout::column_local(&[2, 2]).unwrap().with_spatial(&[8, 4]).unwrap().with_local(&[1, 2]).unwrap();
    // B (16x8 f16, k x n): local(2,1).column_spatial(4,8).local(2,1);
    // PTX: k = 2*tig + i%2 + 8*(i/2), n = groupID.
    let b = local(&[2, 1]).with_column_spatial(&[4, 8]).unwrap().with_local(&[2, 1]).unwrap();
    for lane in 0..32 {
        let (group, tig) = (lane / 4, lane % 4);
        for i in 0..8 {
            assert_eq!(a.coord(lane, i), Some(vec![group + 8 * ((i / 2) % 2), 2 * tig + i % 2 + 8 * (i / 4)]));
        }
        for i in 0..4 {
            assert_eq!(b.coord(lane, i), Some(vec![2 * tig + i % 2 + 8 * (i / 2), group]));
        }
    }
}

#[test]
fn reduce_spatial_3_4_over_dim_0() {
    let r = spatial(&[3, 4]).reduce(&[0]).unwrap();
    assert_eq!(r.shape(), &[4]);
    assert_eq!(r.spatial_modes(), &[Replicate(3), Mode(0)]);
    assert_eq!(r.replication(), 3);
    for j in 0..4 {
        assert_eq!(r.owners(&[j]), vec![(j, 0), (j + 4, 0), (j + 8, 0)]);
    }
    assert_eq!(r.replica_index(5), Some(1));
    assert_eq!(r.to_string(), "layout(shape=[4], modes=[4], spatial=[-3, 0], local=[])");
    // Keeping the dim: extent 1, same owners.
    let k = spatial(&[3, 4]).reduce_keep_dims(&[0]).unwrap();
    assert_eq!(k.shape(), &[1, 4]);
    assert_eq!(k.owners(&[0, 2]), vec![(2, 0), (6, 0), (10, 0)]);
}

#[test]
fn division_examples() {
    assert_eq!(spatial(&[6]).divide_right(&spatial(&[3])), Some(spatial(&[2])));
    let x = spatial(&[2, 12]).with_local(&[2, 3]).unwrap();
    assert_eq!(x.divide_right(&local(&[2, 3])), Some(spatial(&[2, 12])));
    assert_eq!(x.divide_left(&spatial(&[2, 12])), Some(local(&[2, 3])));
    assert_eq!(local(&[2, 4]).divide_right(&local(&[1, 2])), Some(local(&[2, 2])));
    // Not divisible: wrong kind, wrong size, wrong order.
    assert_eq!(spatial(&[6]).divide_right(&local(&[3])), None);
    assert_eq!(spatial(&[6]).divide_right(&spatial(&[4])), None);
    assert_eq!(mul(&spatial(&[2]), &local(&[2])).divide_right(&spatial(&[2])), None);
    // The accumulator fragment is divisible by its ldmatrix-like atom, quotient local(2,1).
    let atom = spatial(&[8, 4]).with_local(&[1, 2]).unwrap();
    assert_eq!(mma_c().divide_right(&atom), Some(local(&[2, 1])));
    // Replication split at the boundary: [-6] / [-3] = [-2].
    let r6 = RegisterLayout::replicate(&[1], 6).unwrap();
    assert_eq!(
        r6.divide_right(&RegisterLayout::replicate(&[1], 3).unwrap()),
        Some(RegisterLayout::replicate(&[1], 2).unwrap())
    );
}

#[test]
fn canonicalization_examples() {
    assert_eq!(local(&[4]), mul(&local(&[2]), &local(&[2])));
    assert_eq!(spatial(&[6]), mul(&spatial(&[2]), &spatial(&[3])));
    assert_eq!(local(&[2, 3]), mul(&local(&[2, 1]), &local(&[1, 3])));
    assert_ne!(mul(&spatial(&[2]), &local(&[2])), mul(&local(&[2]), &spatial(&[2])));
    // Adjacent replication digits merge ([-2, -3, 0] == [-6, 0]); Tilus keeps them apart.
    let split = RegisterLayout::from_modes(&[4], &[vec![4]], &[Replicate(2), Replicate(3), Mode(0)], &[]).unwrap();
    let merged = RegisterLayout::from_modes(&[4], &[vec![4]], &[Replicate(6), Mode(0)], &[]).unwrap();
    assert_eq!(split, merged);
    assert_eq!(merged.spatial_modes(), &[Replicate(6), Mode(0)]);
    // Size-1 modes and replication vanish.
    let ones =
        RegisterLayout::from_modes(&[2, 1], &[vec![1, 2, 1], vec![1]], &[Replicate(1), Mode(3)], &[1, 0, 2]).unwrap();
    assert_eq!(ones, local(&[2, 1]));
    assert_eq!(ones.mode_shape(), &[2]);
    // Modes adjacent in the dimension but not in the list stay apart; in the list but not the
    // dimension too.
    let kept = RegisterLayout::from_modes(&[4], &[vec![2, 2]], &[Mode(1)], &[0]).unwrap();
    assert_eq!(kept.mode_shape(), &[2, 2]);
    let kept = RegisterLayout::from_modes(&[4], &[vec![2, 2]], &[], &[1, 0]).unwrap();
    assert_eq!(kept.mode_shape(), &[2, 2]);
    // Split then merge through reshape comes back canonical.
    let l = local(&[2, 3]);
    assert_eq!(l.reshape(&[6]).unwrap(), local(&[6]));
    assert_eq!(l.reshape(&[6]).unwrap().reshape(&[2, 3]).unwrap(), l);
    // Column-major spatial(2,2) == spatial in the reversed order.
    assert_eq!(
        RegisterLayout::column_spatial(&[2, 2]).unwrap(),
        RegisterLayout::spatial_in_order(&[2, 2], &[1, 0]).unwrap()
    );
}

#[test]
fn constructors_reject_bad_input() {
    assert!(RegisterLayout::local(&[2, 0]).is_err());
    assert!(RegisterLayout::spatial(&[usize::MAX, 4]).is_err());
    assert!(RegisterLayout::from_modes(&[4], &[vec![2]], &[], &[0]).is_err());
    assert!(RegisterLayout::from_modes(&[4], &[vec![2, 2]], &[Mode(0)], &[0, 1]).is_err());
    assert!(RegisterLayout::from_modes(&[4], &[vec![2, 2]], &[Mode(0)], &[]).is_err());
    assert!(RegisterLayout::from_modes(&[4], &[vec![2, 2]], &[Mode(5)], &[0]).is_err());
    assert!(RegisterLayout::auto_local_spatial(&[4], 0).is_err());
    assert!(local(&[4]).reshape(&[3]).is_err());
    assert!(local(&[4, 3]).flatten().unwrap().reshape(&[3, 4]).is_ok());
    let modes_4_3 = RegisterLayout::from_modes(&[12], &[vec![4, 3]], &[Mode(0)], &[1]).unwrap();
    assert!(modes_4_3.reshape(&[3, 4]).is_err());
    assert!(local(&[2, 2]).permute(&[0, 0]).is_err());
    assert!(local(&[2, 2]).squeeze(&[0]).is_err());
    assert!(Swizzle::new(3, 3, 2).is_err());
    assert!(SharedLayout::from_dims(&[4], &[0]).is_err());
    assert!(SharedLayout::row_major(&[0, 4]).is_err());
}

#[test]
fn auto_local_spatial_spreads_threads_from_the_last_dimension() {
    for (shape, threads) in
        [(vec![16, 64], 128), (vec![3, 5], 32), (vec![256], 128), (vec![1, 8], 64), (vec![64, 64], 128)]
    {
        let l = RegisterLayout::auto_local_spatial(&shape, threads).unwrap();
        // local(shape / spatial) * spatial(spatial), replicated over the threads left, where
        // spatial takes gcd(remaining threads, extent) from the last dimension backwards.
        let mut spatial_shape = vec![1; shape.len()];
        let mut remaining = threads;
        for d in (0..shape.len()).rev() {
            let mut g = remaining.min(shape[d]);
            while remaining % g != 0 || shape[d] % g != 0 {
                g -= 1;
            }
            spatial_shape[d] = g;
            remaining /= g;
        }
        let local_shape: Vec<usize> = shape.iter().zip(&spatial_shape).map(|(s, t)| s / t).collect();
        let expected = local(&local_shape).with_spatial(&spatial_shape).unwrap().replicated(remaining).unwrap();
        assert_eq!(l, expected, "{shape:?} on {threads}");
        assert_eq!(l.num_threads(), threads);
        assert_eq!(l.shape(), &shape[..]);
    }
    let l = RegisterLayout::auto_local_spatial(&[16, 64], 128).unwrap();
    assert_eq!(l, local(&[8, 1]).with_spatial(&[2, 64]).unwrap());
    let l = RegisterLayout::auto_local_spatial(&[1, 8], 64).unwrap();
    assert_eq!(l.to_string(), "layout(shape=[1, 8], modes=[8], spatial=[-8, 0], local=[])");
}

#[test]
fn layouts_print_as_products() {
    assert_eq!(mma_c().readable(), "local(2, 1) * spatial(8, 4) * local(1, 2)");
    let l = RegisterLayout::auto_local_spatial(&[1, 8], 64).unwrap();
    assert_eq!(l.readable(), "replicate(8) * spatial(1, 8)");
    let l = RegisterLayout::column_spatial(&[4, 8]).unwrap().with_local(&[2, 1]).unwrap();
    assert_eq!(l.readable(), "spatial(1, 8) * spatial(4, 1) * local(2, 1)");
    assert_eq!(RegisterLayout::unit(2).readable(), "local(1, 1)");
    // Every product of primitives prints as a product that builds it back.
    for l in [
        local(&[3, 4]).with_spatial(&[2, 3]).unwrap(),
        spatial(&[2, 4]).replicated(2).unwrap().with_spatial(&[2, 2]).unwrap().with_local(&[3, 1]).unwrap(),
        local(&[1, 2]).with_spatial(&[2, 2]).unwrap().with_local(&[2, 1]).unwrap().with_spatial(&[8, 4]).unwrap(),
    ] {
        assert!(l.product_form().is_some(), "{l}");
    }
}

#[test]
fn thread_terms_and_local_coords_agree_with_coord() {
    let layouts = [
        local(&[2, 1]).with_spatial(&[8, 4]).unwrap().with_local(&[1, 2]).unwrap(),
        RegisterLayout::auto_local_spatial(&[3, 5], 32).unwrap(),
        RegisterLayout::column_spatial(&[4, 8]).unwrap().with_local(&[2, 1]).unwrap(),
        spatial(&[2, 4]).replicated(2).unwrap().with_spatial(&[2, 2]).unwrap().with_local(&[3, 1]).unwrap(),
    ];
    for l in layouts {
        for t in 0..l.num_threads() {
            for i in 0..l.local_size() {
                let mut c = l.local_coords(i);
                for term in l.thread_terms() {
                    c[term.dim] += ((t / term.stride) % term.extent) * term.multiplier;
                }
                assert_eq!(Some(c), l.coord(t, i), "{l} thread {t} local {i}");
                let primary = l.replication_digits().iter().all(|(stride, extent)| (t / stride) % extent == 0);
                assert_eq!(primary, l.replica_index(t) == Some(0), "{l} thread {t}");
            }
        }
    }
}

#[test]
fn swizzle_3_3_3_table_on_f16_rows_of_64() {
    let sw = Swizzle::new(3, 3, 3).unwrap();
    assert_eq!(sw.to_string(), "Swizzle<3,3,3>");
    assert_eq!(sw.in_bytes(2).unwrap(), Swizzle::new(3, 4, 3).unwrap());
    let plain = SharedLayout::row_major(&[8, 64]).unwrap();
    let swizzled = plain.with_swizzle(Some(sw));
    // The physical 16-byte chunk is the logical chunk XOR (row mod 8).
    let table: Vec<Vec<usize>> =
        (0..8).map(|r| (0..8).map(|c| (swizzled.offset(&[r, 8 * c]).unwrap() - 64 * r) / 8).collect()).collect();
    assert_eq!(table[0], vec![0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(table[1], vec![1, 0, 3, 2, 5, 4, 7, 6]);
    assert_eq!(table[2], vec![2, 3, 0, 1, 6, 7, 4, 5]);
    assert_eq!(table[7], vec![7, 6, 5, 4, 3, 2, 1, 0]);
    for (r, row) in table.iter().enumerate() {
        for (c, &chunk) in row.iter().enumerate() {
            assert_eq!(chunk, c ^ r);
            // 16-byte vectors stay contiguous.
            for e in 0..8 {
                assert_eq!(swizzled.offset(&[r, 8 * c + e]).unwrap(), swizzled.offset(&[r, 8 * c]).unwrap() + e);
            }
        }
    }
    // The cp.async/ldmatrix layout of an [8, 64] f16 tile is exactly this one.
    let auto = SharedLayout::row_major_swizzled(&[8, 64], 2).unwrap();
    assert_eq!(auto.swizzle(), Some(sw));
    assert_eq!(auto, swizzled);
    assert!(auto.is_injective());
    // ldmatrix: 8 lanes read logical chunk c of rows 0..8 (16 bytes each): one wavefront when
    // swizzled, eight when not.
    for c in 0..8 {
        let addresses =
            |l: &SharedLayout| (0..8).map(|r| 2 * l.offset(&[r, 8 * c]).unwrap() as u64).collect::<Vec<_>>();
        assert_eq!(bank_wavefronts(&addresses(&swizzled), 16).unwrap(), 1);
        assert_eq!(bank_wavefronts(&addresses(&plain), 16).unwrap(), 8);
    }
}

#[test]
fn row_major_swizzled_family() {
    // 64-byte rows of f16 (n = 32): 2 swizzle bits; 32-byte rows: 1; 16-byte: none.
    assert_eq!(SharedLayout::row_major_swizzled(&[16, 32], 2).unwrap().swizzle(), Some(Swizzle::new(2, 3, 3).unwrap()));
    assert_eq!(SharedLayout::row_major_swizzled(&[16, 16], 2).unwrap().swizzle(), Some(Swizzle::new(1, 3, 3).unwrap()));
    assert_eq!(SharedLayout::row_major_swizzled(&[16, 8], 2).unwrap().swizzle(), None);
    // int8 rows of 128 elements: base 4.
    assert_eq!(SharedLayout::row_major_swizzled(&[8, 128], 1).unwrap().swizzle(), Some(Swizzle::new(3, 4, 3).unwrap()));
    // Wider rows become 128-byte panels: [32, 128] f16 = 2 panels of 64 columns.
    let l = SharedLayout::row_major_swizzled(&[32, 128], 2).unwrap();
    assert_eq!(l.offset(&[0, 64]), Some(32 * 64));
    assert!(l.is_injective());
    assert_eq!(l.storage_size(), 32 * 128);
    for shape in [vec![64, 64], vec![2, 16, 64], vec![16, 48], vec![8, 24]] {
        let l = SharedLayout::row_major_swizzled(&shape, 2).unwrap();
        assert!(l.is_injective(), "{l}");
        assert!(l.storage_size() <= shape.iter().product::<usize>().next_power_of_two());
    }
    // ldmatrix reading an mma A operand from a [64, 64] f16 tile: conflict-free with the swizzle.
    let tile = SharedLayout::row_major_swizzled(&[64, 64], 2).unwrap();
    // Lane t reads 16 bytes of row t % 8, chunk t / 8 (the ldmatrix.x4 address pattern); the
    // outer local(8, 2) walks the rest of the tile.
    let lanes = local(&[8, 2]).with_column_spatial(&[8, 4]).unwrap().with_local(&[1, 8]).unwrap();
    assert_eq!(lanes.shape(), &[64, 64]);
    // 16-byte accesses take 4 phases of 8 lanes: 4 wavefronts is conflict-free, 32 is 8-way.
    assert_eq!(shared_access_wavefronts(&lanes, &tile, 16, 8).unwrap(), 4);
    assert_eq!(shared_access_wavefronts_f2(&lanes, &tile, 16, 8).unwrap(), 4);
    let plain = SharedLayout::row_major(&[64, 64]).unwrap();
    assert_eq!(shared_access_wavefronts(&lanes, &plain, 16, 8).unwrap(), 32);
    assert_eq!(shared_access_wavefronts_f2(&lanes, &plain, 16, 8).unwrap(), 32);
}

#[test]
fn linear_layout_4x4_example() {
    // L(t=1) = (1,1), L(t=2) = (2,2), L(w=1) = (0,1), L(w=2) = (0,2): L(t, w) = (t, w ^ t).
    let l = F2Layout::from_bases(
        &[("t", vec![vec![1, 1], vec![2, 2]]), ("w", vec![vec![0, 1], vec![0, 2]])],
        &[("dim0", 2), ("dim1", 2)],
    )
    .unwrap();
    for t in 0..4 {
        for w in 0..4 {
            assert_eq!(l.apply_dims(&[t, w]).unwrap(), vec![t, w ^ t]);
        }
    }
    let inv = l.invert().unwrap();
    for x in 0..16 {
        assert_eq!(inv.apply(l.apply(x)), x);
    }
    assert_eq!(l.rank(), 4);
}

#[test]
fn mma_accumulator_as_linear_layout() {
    // reg bases (0,1), (8,0); lane bases (0,2), (0,4), (1,0), (2,0), (4,0) as (row, col).
    // Outputs of `from_register` are [dim1 (col), dim0 (row)], so bases are written (col, row).
    let want = F2Layout::from_bases(
        &[
            ("local", vec![vec![1, 0], vec![0, 8]]),
            ("thread", vec![vec![2, 0], vec![4, 0], vec![0, 1], vec![0, 2], vec![0, 4]]),
        ],
        &[("dim1", 3), ("dim0", 4)],
    )
    .unwrap();
    let c = mma_c();
    assert_eq!(c.to_f2().unwrap(), want);
    // Stored to a row-major 16x8 f16 tile: register bases [1, 64], lane bases [2, 4, 8, 16, 32],
    // so 2-element (32-bit) vectors; column-major gives 1.
    let row = SharedLayout::row_major(&[16, 8]).unwrap();
    let cvt = c.to_f2().unwrap().compose(&row.to_f2().unwrap()).unwrap();
    assert_eq!(cvt.dim_columns("local"), &[1, 64]);
    assert_eq!(cvt.dim_columns("thread"), &[2, 4, 8, 16, 32]);
    assert_eq!(vector_width(&c, &row, 16, 16).unwrap(), 2);
    assert_eq!(vector_width_brute_force(&c, &row, 16, 16).unwrap(), 2);
    assert_eq!(vector_width(&c, &SharedLayout::column_major(&[16, 8]).unwrap(), 16, 16).unwrap(), 1);
    // f32 (the accumulator's own type): also 2 (8 bytes).
    assert_eq!(vector_width(&c, &row, 32, 16).unwrap(), 2);
    assert_eq!(c.to_f2().unwrap().to_string(), "local: [1, 64] | thread: [2, 4, 8, 16, 32] -> [dim1:3, dim0:4]");
}

#[test]
fn conversion_examples() {
    let c = mma_c();
    // C fragment -> spatial(16,2).local(1,4): registers and lanes exchange bits, a warp shuffle.
    let rows = spatial(&[16, 2]).with_local(&[1, 4]).unwrap();
    assert_eq!(classify_conversion(&c, &rows).unwrap(), ConversionKind::IntraWarp);
    assert_eq!(classify_conversion_brute_force(&c, &rows).unwrap(), ConversionKind::IntraWarp);
    // A layout to itself, and to a local permutation of itself: in thread.
    assert_eq!(classify_conversion(&c, &c).unwrap(), ConversionKind::InThread);
    let perm = RegisterLayout::from_modes(
        &[16, 8],
        &c.dim_modes(),
        c.spatial_modes(),
        &[c.local_modes()[1], c.local_modes()[0]],
    )
    .unwrap();
    assert_eq!(classify_conversion(&c, &perm).unwrap(), ConversionKind::InThread);
    // Two warps, the second dimension spread over threads row- or column-major: across warps.
    let a = spatial(&[2, 32]);
    let flipped = RegisterLayout::column_spatial(&[2, 32]).unwrap();
    assert_eq!(classify_conversion(&a, &flipped).unwrap(), ConversionKind::CrossWarp);
    // A replicated source serves any destination whose threads it covers.
    let everyone = RegisterLayout::replicate(&[4, 8], 64).unwrap();
    let spread = RegisterLayout::auto_local_spatial(&[4, 8], 64).unwrap();
    assert_eq!(classify_conversion(&everyone, &spread).unwrap(), ConversionKind::InThread);
    // Every warp of `spread` holds the whole tile (replication 2 is the warp digit).
    assert_eq!(classify_conversion(&spread, &everyone).unwrap(), ConversionKind::IntraWarp);
    // Mixed radix goes through the brute force.
    let three = local(&[3]).with_spatial(&[32]).unwrap();
    let three_t = spatial(&[32]).with_local(&[3]).unwrap();
    assert_eq!(classify_conversion(&three, &three_t).unwrap(), ConversionKind::IntraWarp);
    assert!(classify_conversion(&three, &spatial(&[96])).is_err());
}

#[test]
fn display_is_deterministic() {
    assert_eq!(mma_c().to_string(), "layout(shape=[16, 8], modes=[2, 8, 4, 2], spatial=[1, 2], local=[0, 3])");
    assert_eq!(
        SharedLayout::row_major_swizzled(&[8, 64], 2).unwrap().to_string(),
        "shared(shape=[8, 64], modes=[8, 64], strides=[64, 1], swizzle=Swizzle<3,3,3>)"
    );
    assert_eq!(RegisterLayout::unit(2).to_string(), "layout(shape=[1, 1], modes=[], spatial=[], local=[])");
}

#[test]
fn int3_weight_tile_is_mixed_radix() {
    // local(3).spatial(32).local(1): 3 bytes per thread, not a power of two.
    let l = local(&[3]).with_spatial(&[32]).unwrap().with_local(&[1]).unwrap();
    assert_eq!((l.num_threads(), l.local_size()), (32, 3));
    assert!(!l.is_power_of_two());
    assert!(l.to_f2().is_err());
    assert_eq!(l.coord(5, 2), Some(vec![2 * 32 + 5]));
}
