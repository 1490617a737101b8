//! Analyses over layouts: vector width of memory accesses, classification of layout
//! conversions, and shared-memory bank conflicts.
//!
//! Each analysis has an exact brute-force form that works for every layout (mixed radix
//! included; compile-time tiles are small) and, where the layouts are powers of two, a GF(2)
//! form that the tests check against it. The public entry points pick the GF(2) form when it
//! applies.
//!
//! # Contracts
//!
//! * [`vector_width`]`(reg, mem, elem_bits, max_bytes)` is the largest power of two `v` such that
//!   `v` divides `local_size`; for every thread and every block of local indices `[k v, k v + v)`
//!   the offsets are consecutive and the first is a multiple of `v`; `v * elem_bits` is a whole,
//!   power-of-two number of bytes of at most `max_bytes`. If no `v > 1` qualifies the answer is
//!   1 (scalar accesses, bit-level for sub-byte types).
//!   [`row_tile_vector_width`] is the same for a tile of a global tensor with unknown row
//!   strides (the lowering's vector loads and stores).
//! * [`classify_conversion`]`(src, dst)`: `InThread` iff every thread already holds (in `src`)
//!   every element it must hold in `dst`; `IntraWarp` iff that holds for every warp of 32
//!   consecutive threads; `CrossWarp` otherwise. Replication in `src` can only help.
//! * [`bank_wavefronts`]: 32 banks of 4 bytes, `bank = (byte_address / 4) % 32`; a warp-wide
//!   access of `access_bytes` per lane is served in phases of 128 bytes (all 32 lanes for accesses
//!   up to 4 bytes, 16 lanes for 8 bytes, 8 lanes for 16 bytes); a phase takes as many wavefronts
//!   as the largest number of distinct 4-byte words any one bank must deliver. A conflict-free
//!   access takes one wavefront per phase.

use std::collections::HashSet;

use super::error::{capped_mul, LayoutError};
use super::gf2::F2Layout;
use super::register::RegisterLayout;
use super::shared::SharedLayout;

/// Threads per warp.
pub const WARP_SIZE: usize = 32;

/// Where a conversion between two register layouts of the same tile moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversionKind {
    /// Every thread already holds what it needs: a register permutation, free.
    InThread,
    /// Data moves between lanes of a warp only: warp shuffles.
    IntraWarp,
    /// Data crosses warps: a round trip through shared memory.
    CrossWarp,
}

fn check_same_tile(src: &RegisterLayout, dst: &RegisterLayout) -> Result<(), LayoutError> {
    if src.shape() != dst.shape() {
        return Err(LayoutError::ShapeMismatch(src.shape().to_vec(), dst.shape().to_vec()));
    }
    if src.num_threads() != dst.num_threads() {
        return Err(LayoutError::ThreadCountMismatch(src.num_threads(), dst.num_threads()));
    }
    Ok(())
}

fn linear_index(coord: &[usize], shape: &[usize]) -> usize {
    coord.iter().zip(shape).fold(0, |acc, (c, s)| acc * s + c)
}

/// Classify the conversion `src -> dst` (see the module contract). Both layouts must cover the
/// same shape with the same thread count.
pub fn classify_conversion(src: &RegisterLayout, dst: &RegisterLayout) -> Result<ConversionKind, LayoutError> {
    check_same_tile(src, dst)?;
    if src.is_power_of_two() && dst.is_power_of_two() {
        classify_conversion_f2(&src.to_f2()?, &dst.to_f2()?)
    } else {
        classify_conversion_brute_force(src, dst)
    }
}

/// [`classify_conversion`] by comparing ownership sets element by element.
pub fn classify_conversion_brute_force(
    src: &RegisterLayout,
    dst: &RegisterLayout,
) -> Result<ConversionKind, LayoutError> {
    check_same_tile(src, dst)?;
    let shape = src.shape();
    // `group(t)` is the thread group that must hold dst's elements: the thread itself, or its warp.
    let holds = |group: &dyn Fn(usize) -> usize| -> bool {
        let mut have: HashSet<(usize, usize)> = HashSet::new();
        for t in 0..src.num_threads() {
            for l in 0..src.local_size() {
                if let Some(c) = src.coord(t, l) {
                    have.insert((group(t), linear_index(&c, shape)));
                }
            }
        }
        (0..dst.num_threads()).all(|t| {
            (0..dst.local_size())
                .all(|l| dst.coord(t, l).is_some_and(|c| have.contains(&(group(t), linear_index(&c, shape)))))
        })
    };
    Ok(if holds(&|t| t) {
        ConversionKind::InThread
    } else if holds(&|t| t / WARP_SIZE) {
        ConversionKind::IntraWarp
    } else {
        ConversionKind::CrossWarp
    })
}

/// [`classify_conversion`] on the GF(2) forms (`F2Layout::from_register` of both layouts).
///
/// With `S = src`, `D = dst` split into local and thread columns: every thread holds what it
/// needs iff every `D_local` column and every `D_thread ⊕ S_thread` column lies in the span of
/// `S_local` (the set a thread must reach from its own registers is linear in (local, thread)).
/// For warps the same test runs with the lane bits (the low 5 thread bits) moved to the
/// "reachable" side.
pub fn classify_conversion_f2(src: &F2Layout, dst: &F2Layout) -> Result<ConversionKind, LayoutError> {
    if src.out_dims() != dst.out_dims() {
        return Err(LayoutError::F2DimMismatch("conversion between different tiles".into()));
    }
    let (s_local, s_thread) = (src.dim_columns("local"), src.dim_columns("thread"));
    let (d_local, d_thread) = (dst.dim_columns("local"), dst.dim_columns("thread"));
    if s_thread.len() != d_thread.len() {
        return Err(LayoutError::ThreadCountMismatch(1 << s_thread.len(), 1 << d_thread.len()));
    }
    let lane_bits = s_thread.len().min(WARP_SIZE.trailing_zeros() as usize);
    let reachable_by = |own: Vec<u64>, moving: Vec<u64>| -> bool {
        let out = src.out_dims().to_vec();
        let span = F2Layout::new(vec![("own".into(), own.len() as u32)], out, own);
        span.is_ok_and(|span| moving.iter().all(|&c| span.image_contains(c)))
    };
    let differences = |range: std::ops::Range<usize>| range.map(|j| d_thread[j] ^ s_thread[j]);
    let thread_needs: Vec<u64> = d_local.iter().copied().chain(differences(0..d_thread.len())).collect();
    if reachable_by(s_local.to_vec(), thread_needs) {
        return Ok(ConversionKind::InThread);
    }
    let own: Vec<u64> = s_local.iter().chain(&s_thread[..lane_bits]).copied().collect();
    let warp_needs: Vec<u64> =
        d_local.iter().chain(&d_thread[..lane_bits]).copied().chain(differences(lane_bits..d_thread.len())).collect();
    Ok(if reachable_by(own, warp_needs) { ConversionKind::IntraWarp } else { ConversionKind::CrossWarp })
}

fn check_vector_args(elem_bits: u32, max_bytes: usize) -> Result<(), LayoutError> {
    if elem_bits == 0 || elem_bits > 64 {
        return Err(LayoutError::BadElementBits(elem_bits));
    }
    if max_bytes == 0 {
        return Err(LayoutError::InvalidAccess("the vector cap must be at least one byte".into()));
    }
    Ok(())
}

/// Whether `v` elements of `elem_bits` bits make a legal vector of at most `max_bytes` bytes.
fn vector_bytes_ok(v: usize, elem_bits: u32, max_bytes: usize) -> bool {
    let bits = v * elem_bits as usize;
    bits.is_multiple_of(8) && (bits / 8).is_power_of_two() && bits / 8 <= max_bytes
}

/// The vector width of accesses from register layout `reg` to memory laid out by `mem` (see the
/// module contract); GF(2) when both are powers of two, brute force otherwise.
pub fn vector_width(
    reg: &RegisterLayout,
    mem: &SharedLayout,
    elem_bits: u32,
    max_bytes: usize,
) -> Result<usize, LayoutError> {
    check_vector_args(elem_bits, max_bytes)?;
    if reg.shape() != mem.shape() {
        return Err(LayoutError::ShapeMismatch(reg.shape().to_vec(), mem.shape().to_vec()));
    }
    match (reg.to_f2(), mem.to_f2()) {
        (Ok(r), Ok(m)) => vector_width_f2(&r.compose(&m)?, elem_bits, max_bytes),
        _ => vector_width_brute_force(reg, mem, elem_bits, max_bytes),
    }
}

/// The vector width of accesses from register layout `reg` to a tile of a row-major tensor in
/// global memory whose row strides are not known at compile time: [`vector_width`] with the
/// rows a power of two apart, more than a row's length (twice its power-of-two ceiling), so
/// that a block of elements is consecutive only within one row and aligned only when its first
/// column is a multiple of the width. Whether the rows themselves are aligned is the caller's
/// to prove.
pub fn row_tile_vector_width(reg: &RegisterLayout, elem_bits: u32, max_bytes: usize) -> Result<usize, LayoutError> {
    let shape = reg.shape();
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        let apart = if d + 2 == shape.len() { 2 } else { 1 };
        strides[d] = capped_mul(strides[d + 1], capped_mul(shape[d + 1].next_power_of_two(), apart)?)?;
    }
    vector_width(reg, &SharedLayout::from_dims(shape, &strides)?, elem_bits, max_bytes)
}

/// [`vector_width`] by checking every thread and every block.
pub fn vector_width_brute_force(
    reg: &RegisterLayout,
    mem: &SharedLayout,
    elem_bits: u32,
    max_bytes: usize,
) -> Result<usize, LayoutError> {
    check_vector_args(elem_bits, max_bytes)?;
    if reg.shape() != mem.shape() {
        return Err(LayoutError::ShapeMismatch(reg.shape().to_vec(), mem.shape().to_vec()));
    }
    let local = reg.local_size();
    let mut offsets = Vec::with_capacity(reg.num_threads() * local);
    for t in 0..reg.num_threads() {
        for l in 0..local {
            let c = reg.coord(t, l).ok_or(LayoutError::InvalidAccess("coordinate out of range".into()))?;
            offsets.push(mem.offset(&c).ok_or(LayoutError::InvalidAccess("offset out of range".into()))?);
        }
    }
    let works = |v: usize| {
        local.is_multiple_of(v)
            && vector_bytes_ok(v, elem_bits, max_bytes)
            && offsets
                .chunks(v)
                .all(|block| block[0].is_multiple_of(v) && block.iter().enumerate().all(|(i, &o)| o == block[0] + i))
    };
    let mut best = 1;
    let mut v = 2;
    while v <= local && v * elem_bits as usize <= max_bytes.saturating_mul(8) {
        if works(v) {
            best = v;
        }
        v *= 2;
    }
    Ok(best)
}

/// [`vector_width`] on a GF(2) map `(local, thread) -> offset`: the leading local columns must
/// be `1, 2, 4, ..` (consecutive) and every other column must leave those low bits zero
/// (aligned block starts); then the byte rules cap the width.
pub fn vector_width_f2(reg_to_offset: &F2Layout, elem_bits: u32, max_bytes: usize) -> Result<usize, LayoutError> {
    check_vector_args(elem_bits, max_bytes)?;
    let local = reg_to_offset.dim_columns("local");
    let mut k = 0;
    while k < local.len() && local[k] == 1u64 << k {
        k += 1;
    }
    if reg_to_offset.in_dims().first().is_none_or(|(name, _)| name != "local") {
        return Err(LayoutError::F2DimMismatch("the first input dimension must be `local`".into()));
    }
    // The first k columns are the leading local ones; every other column shifts block starts.
    let others = reg_to_offset.columns()[k..].iter();
    let low_bits_used = others.fold(0u64, |acc, c| acc | c);
    let aligned = if low_bits_used == 0 { 64 } else { low_bits_used.trailing_zeros() as usize };
    let k = k.min(aligned);
    let mut best = 1;
    for j in 1..=k {
        let v = 1usize << j;
        if v * elem_bits as usize > max_bytes.saturating_mul(8) {
            break;
        }
        if vector_bytes_ok(v, elem_bits, max_bytes) {
            best = v;
        }
    }
    Ok(best)
}

fn phase_lanes(access_bytes: u32) -> Result<usize, LayoutError> {
    match access_bytes {
        1 | 2 | 4 => Ok(32),
        8 => Ok(16),
        16 => Ok(8),
        _ => Err(LayoutError::InvalidAccess(format!("{access_bytes}-byte accesses are not supported"))),
    }
}

/// Wavefronts a warp-wide shared-memory access needs (see the module contract);
/// `byte_addresses[lane]` is each lane's address, at most 32 lanes, each aligned to
/// `access_bytes` ∈ {1, 2, 4, 8, 16}.
pub fn bank_wavefronts(byte_addresses: &[u64], access_bytes: u32) -> Result<usize, LayoutError> {
    let lanes_per_phase = phase_lanes(access_bytes)?;
    if byte_addresses.len() > WARP_SIZE {
        return Err(LayoutError::InvalidAccess(format!("{} lanes in one warp", byte_addresses.len())));
    }
    if byte_addresses.iter().any(|a| !a.is_multiple_of(access_bytes as u64)) {
        return Err(LayoutError::InvalidAccess("an address is not aligned to the access size".into()));
    }
    let words_per_lane = (access_bytes as u64).div_ceil(4);
    let mut total = 0;
    for phase in byte_addresses.chunks(lanes_per_phase) {
        let mut words: HashSet<u64> = HashSet::new();
        for &a in phase {
            for w in 0..words_per_lane {
                words.insert(a / 4 + w);
            }
        }
        let mut per_bank = [0usize; 32];
        for w in words {
            per_bank[(w % 32) as usize] += 1;
        }
        total += per_bank.iter().copied().max().unwrap_or(0);
    }
    Ok(total)
}

/// [`bank_wavefronts`] for XOR-linear addresses: lane `x` accesses
/// `base ^ XOR{lane_columns[j] : bit j of x}` (up to 5 columns, one per lane bit; the base does
/// not change the count). With `M` the map (within-access word, phase lane bits) -> word
/// address, the lanes of a phase that share a bank form cosets of `ker(bank ∘ M)`, each
/// delivering `2^(dim ker(bank ∘ M) - dim ker M)` distinct words; every phase costs the same.
pub fn bank_wavefronts_f2(lane_columns: &[u64], access_bytes: u32) -> Result<usize, LayoutError> {
    let lanes_per_phase = phase_lanes(access_bytes)?;
    if lane_columns.len() > WARP_SIZE.trailing_zeros() as usize {
        return Err(LayoutError::InvalidAccess(format!("{} lane bits in one warp", lane_columns.len())));
    }
    if lane_columns.iter().any(|a| !a.is_multiple_of(access_bytes as u64)) {
        return Err(LayoutError::InvalidAccess("an address is not aligned to the access size".into()));
    }
    let phase_bits = (lanes_per_phase.trailing_zeros() as usize).min(lane_columns.len());
    let phases = 1usize << (lane_columns.len() - phase_bits);
    let word_bits = (access_bytes / 4).max(1).trailing_zeros();
    // Inputs: the words within one access (addresses +4, +8 bytes), then the phase's lane bits.
    let mut word_columns: Vec<u64> = (0..word_bits).map(|j| 1u64 << j).collect();
    word_columns.extend(lane_columns[..phase_bits].iter().map(|c| c >> 2));
    let n = word_columns.len() as u32;
    let f2 = |columns: Vec<u64>| F2Layout::new(vec![("in".into(), n)], vec![("word".into(), 64)], columns);
    let kernel_dim = |columns: Vec<u64>| -> Result<usize, LayoutError> { Ok(f2(columns)?.kernel_basis().len()) };
    let bank_kernel = kernel_dim(word_columns.iter().map(|c| c & 31).collect())?;
    let map_kernel = kernel_dim(word_columns)?;
    Ok(phases << (bank_kernel - map_kernel))
}

fn check_bytes(elem_bits: u32) -> Result<u64, LayoutError> {
    if elem_bits == 0 || !elem_bits.is_multiple_of(8) || !(elem_bits / 8).is_power_of_two() || elem_bits > 128 {
        return Err(LayoutError::BadElementBits(elem_bits));
    }
    Ok(elem_bits as u64 / 8)
}

/// The worst number of wavefronts over every warp and every access when each thread of `reg`
/// moves blocks of `vector` consecutive local elements of `elem_bits` bits to or from `mem`
/// (brute force; offsets are assumed to start at a 128-byte aligned base).
pub fn shared_access_wavefronts(
    reg: &RegisterLayout,
    mem: &SharedLayout,
    elem_bits: u32,
    vector: usize,
) -> Result<usize, LayoutError> {
    let elem_bytes = check_bytes(elem_bits)?;
    if vector == 0 || !reg.local_size().is_multiple_of(vector) {
        return Err(LayoutError::InvalidAccess(format!("vector {vector} does not divide the local size")));
    }
    let access =
        u32::try_from(vector as u64 * elem_bytes).map_err(|_| LayoutError::InvalidAccess("vector too wide".into()))?;
    let mut worst = 0;
    for warp_start in (0..reg.num_threads()).step_by(WARP_SIZE) {
        let lanes = (reg.num_threads() - warp_start).min(WARP_SIZE);
        for block in (0..reg.local_size()).step_by(vector) {
            let mut addresses = Vec::with_capacity(lanes);
            for lane in 0..lanes {
                let c = reg.coord(warp_start + lane, block).ok_or(LayoutError::InvalidAccess("coordinate".into()))?;
                let o = mem.offset(&c).ok_or(LayoutError::InvalidAccess("offset".into()))?;
                addresses.push(o as u64 * elem_bytes);
            }
            worst = worst.max(bank_wavefronts(&addresses, access)?);
        }
    }
    Ok(worst)
}

/// [`shared_access_wavefronts`] through GF(2): the lane columns of `reg ∘ mem`, in bytes. Every
/// access of every warp costs the same under a linear map, so one count answers all.
pub fn shared_access_wavefronts_f2(
    reg: &RegisterLayout,
    mem: &SharedLayout,
    elem_bits: u32,
    vector: usize,
) -> Result<usize, LayoutError> {
    let elem_bytes = check_bytes(elem_bits)?;
    if vector == 0 || !reg.local_size().is_multiple_of(vector) {
        return Err(LayoutError::InvalidAccess(format!("vector {vector} does not divide the local size")));
    }
    let access =
        u32::try_from(vector as u64 * elem_bytes).map_err(|_| LayoutError::InvalidAccess("vector too wide".into()))?;
    let map = reg.to_f2()?.compose(&mem.to_f2()?)?;
    let thread = map.dim_columns("thread");
    let lanes = thread.len().min(WARP_SIZE.trailing_zeros() as usize);
    let columns: Vec<u64> = thread[..lanes].iter().map(|c| c * elem_bytes).collect();
    bank_wavefronts_f2(&columns, access)
}
