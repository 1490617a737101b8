//! The simulator's checks on hand-built LIR programs (the lowering always puts barriers around
//! shared staging and masks global accesses, so the faults are built here directly): shared-
//! memory races with the locations of both accesses, and out-of-bounds accesses, division by
//! zero and divergent barriers with the location of the instruction.

use tl_compiler::diagnostics::{Span, line_col};
use tl_compiler::dtype::DType;
use tl_compiler::lir::{BinaryOp, CmpOp, Expr, Param, Program, Stmt, Ty, Var};
use tl_vm::simt::{self, Access, AccessKind, SimtError};
use tl_vm::{Arg, HostTensor};

/// The kernel source the spans point into (the programs below are what a lowering of it
/// without barriers or masks could look like).
const SOURCE: &str = "kernel k(out: global mut i32[4]) warps(1) {
    store_shared(slot, tid);
    let v = load_shared(next);
    store(out, v, [0]);
}
";

/// The span of the first occurrence of `text` in [`SOURCE`] and the `Source` statement for it.
fn at(text: &str) -> (Span, Stmt) {
    let start = SOURCE.find(text).expect("in the source");
    let span = Span::new(start, start + text.len());
    (span, Stmt::Source { span, what: text.to_string() })
}

fn location(text: &str) -> Option<(Span, String)> {
    Some((at(text).0, text.to_string()))
}

fn int(v: i64) -> Expr {
    Expr::Int(Ty::I32, v)
}

fn bin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    Expr::Binary(op, Box::new(a), Box::new(b))
}

fn tid_is(t: i64) -> Expr {
    Expr::Cmp(CmpOp::Eq, Box::new(Expr::ThreadIdx), Box::new(int(t)))
}

/// The byte offset of thread `e`'s 4-byte slot.
fn slot(e: Expr) -> Expr {
    bin(BinaryOp::Mul, e, int(4))
}

/// The neighbour's slot: `((tid + 1) % threads) * 4`.
fn next_slot(threads: i64) -> Expr {
    slot(bin(BinaryOp::Rem, bin(BinaryOp::Add, Expr::ThreadIdx, int(1)), int(threads)))
}

/// `body` after every thread wrote its own 4-byte slot and a barrier, so that its reads of
/// shared memory read bytes something wrote.
fn initialized(body: Vec<Stmt>) -> Vec<Stmt> {
    let mut all = vec![Stmt::StoreShared { offset: slot(Expr::ThreadIdx), value: Expr::ThreadIdx }, Stmt::Barrier];
    all.extend(body);
    all
}

fn load_shared(offset: Expr) -> Expr {
    Expr::LoadShared { offset: Box::new(offset), ty: Ty::I32 }
}

/// A program of `threads` threads with 64 shared bytes, one i32 register `r0`, one i32
/// register `r1` and an output tensor parameter `out`.
fn program(threads: u32, body: Vec<Stmt>) -> Program {
    Program {
        name: "k".into(),
        params: vec![Param::Global { name: "out".into(), dtype: DType::I32 }],
        block_threads: threads,
        shared_bytes: 64,
        vars: vec![Ty::I32, Ty::I32],
        body,
    }
}

fn run(p: &Program, grid: [u32; 3]) -> (Result<simt::Stats, SimtError>, HostTensor) {
    let mut args = vec![Arg::Tensor(HostTensor::zeros(DType::I32, &[p.block_threads as usize]))];
    let r = simt::launch_counted(p, grid, &mut args);
    let Arg::Tensor(out) = args.remove(0) else { unreachable!() };
    (r, out)
}

/// Each thread writes its own slot, then reads its neighbour's, with or without a barrier
/// between, and stores what it read.
fn exchange(barrier: bool) -> Program {
    let mut body = vec![at("store_shared(slot, tid)").1, Stmt::StoreShared { offset: slot(Expr::ThreadIdx), value: Expr::ThreadIdx }];
    if barrier {
        body.push(Stmt::Barrier);
    }
    body.push(at("load_shared(next)").1);
    body.push(Stmt::Assign(Var(0), load_shared(next_slot(4))));
    body.push(at("store(out, v, [0])").1);
    body.push(Stmt::StoreGlobal { param: 0, index: Expr::Cast { to: Ty::I64, value: Box::new(Expr::ThreadIdx), from_unsigned: false, to_unsigned: false }, value: Expr::Var(Var(0)) });
    program(4, body)
}

#[test]
fn a_missing_barrier_between_a_write_and_another_threads_read_is_a_race() {
    let (r, _) = run(&exchange(false), [1, 1, 1]);
    let e = r.unwrap_err();
    // Thread 0 runs first and reads thread 1's slot (bytes 4..8), which thread 1 wrote.
    assert_eq!(
        e,
        SimtError::SharedRace {
            block: [0, 0, 0],
            byte: 4,
            first: Access { thread: 1, kind: AccessKind::Write, at: location("store_shared(slot, tid)") },
            second: Access { thread: 0, kind: AccessKind::Read, at: location("load_shared(next)") },
        }
    );
    let text = e.to_string();
    assert!(text.starts_with("shared-memory race: thread 0 reads byte 4 that thread 1 wrote since the last barrier"), "{text}");
    assert!(text.contains("`load_shared(next)`") && text.contains("`store_shared(slot, tid)`"), "{text}");
    // The location is the load's line and column in the source.
    let (span, _) = e.location().expect("located").clone();
    let (line, col, _) = line_col(SOURCE, span.start);
    assert_eq!((line, col), (3, 13));
}

#[test]
fn with_the_barrier_the_exchange_is_race_free_and_correct() {
    let (r, out) = run(&exchange(true), [1, 1, 1]);
    let stats = r.expect("no race");
    assert_eq!(out.to_f64(), vec![1.0, 2.0, 3.0, 0.0]);
    assert_eq!(stats.barriers, 1);
    assert_eq!(stats.blocks, 1);
    // Store, barrier, load, store: 4 statements for each of 4 threads (`Source` is free).
    assert_eq!(stats.thread_instructions, 16);
}

#[test]
fn a_write_to_a_byte_another_thread_read_since_the_barrier_is_a_race() {
    // Every thread reads its neighbour's slot, then (no barrier) writes its own.
    let body = initialized(vec![
        at("load_shared(next)").1,
        Stmt::Assign(Var(0), load_shared(next_slot(4))),
        at("store_shared(slot, tid)").1,
        Stmt::StoreShared { offset: slot(Expr::ThreadIdx), value: Expr::ThreadIdx },
    ]);
    let e = run(&program(4, body.clone()), [1, 1, 1]).0.unwrap_err();
    // In lockstep all reads come first; then thread 0 writes byte 0, which thread 3 read.
    assert_eq!(
        e,
        SimtError::SharedRace {
            block: [0, 0, 0],
            byte: 0,
            first: Access { thread: 3, kind: AccessKind::Read, at: location("load_shared(next)") },
            second: Access { thread: 0, kind: AccessKind::Write, at: location("store_shared(slot, tid)") },
        }
    );
    assert!(e.to_string().starts_with("shared-memory race: thread 0 writes byte 0 that thread 3 read since the last barrier"), "{e}");
    // A barrier between the two orders them.
    let mut fixed = body;
    fixed.insert(4, Stmt::Barrier); // after the two statements of `initialized` and the load
    assert!(run(&program(4, fixed), [1, 1, 1]).0.is_ok());
}

#[test]
fn two_threads_writing_one_byte_is_a_race() {
    let body = vec![at("store_shared(slot, tid)").1, Stmt::StoreShared { offset: int(8), value: Expr::ThreadIdx }];
    let e = run(&program(2, body), [1, 1, 1]).0.unwrap_err();
    let loc = location("store_shared(slot, tid)");
    assert_eq!(
        e,
        SimtError::SharedRace {
            block: [0, 0, 0],
            byte: 8,
            first: Access { thread: 0, kind: AccessKind::Write, at: loc.clone() },
            second: Access { thread: 1, kind: AccessKind::Write, at: loc },
        }
    );
    assert!(e.to_string().starts_with("shared-memory race: thread 1 writes byte 8 that thread 0 wrote"), "{e}");
}

#[test]
fn a_race_on_one_byte_of_a_wider_access_is_found() {
    // Thread 0 writes an i32 at 0; thread 1 reads the i8 at byte 3.
    let body = vec![
        Stmt::If { cond: tid_is(0), then_body: vec![Stmt::StoreShared { offset: int(0), value: int(7) }], else_body: vec![] },
        Stmt::If {
            cond: tid_is(1),
            then_body: vec![Stmt::Assign(Var(0), Expr::Cast { to: Ty::I32, value: Box::new(Expr::LoadShared { offset: Box::new(int(3)), ty: Ty::I8 }), from_unsigned: false, to_unsigned: false })],
            else_body: vec![],
        },
    ];
    match run(&program(2, body), [1, 1, 1]).0.unwrap_err() {
        SimtError::SharedRace { byte: 3, first, second, .. } => {
            assert_eq!((first.thread, first.kind, second.thread, second.kind), (0, AccessKind::Write, 1, AccessKind::Read));
            // No `Source` statement ran: the accesses have no location.
            assert_eq!((first.at, second.at), (None, None));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn a_thread_reading_back_and_rewriting_its_own_bytes_is_fine() {
    let body = vec![
        Stmt::StoreShared { offset: slot(Expr::ThreadIdx), value: Expr::ThreadIdx },
        Stmt::Assign(Var(0), load_shared(slot(Expr::ThreadIdx))),
        Stmt::StoreShared { offset: slot(Expr::ThreadIdx), value: bin(BinaryOp::Add, Expr::Var(Var(0)), int(10)) },
        Stmt::Assign(Var(1), load_shared(slot(Expr::ThreadIdx))),
        Stmt::StoreGlobal { param: 0, index: Expr::Cast { to: Ty::I64, value: Box::new(Expr::ThreadIdx), from_unsigned: false, to_unsigned: false }, value: Expr::Var(Var(1)) },
    ];
    let (r, out) = run(&program(4, body), [1, 1, 1]);
    r.expect("no race");
    assert_eq!(out.to_f64(), vec![10.0, 11.0, 12.0, 13.0]);
}

#[test]
fn many_readers_are_fine_and_a_later_writer_races_with_the_other_readers() {
    // Every thread reads byte 0: fine.
    let read_all = Stmt::Assign(Var(0), load_shared(int(0)));
    assert!(run(&program(4, initialized(vec![read_all.clone()])), [1, 1, 1]).0.is_ok());
    // Then thread 0, itself one of the readers, writes it: a race with another reader.
    let write = Stmt::If { cond: tid_is(0), then_body: vec![Stmt::StoreShared { offset: int(0), value: int(1) }], else_body: vec![] };
    match run(&program(4, initialized(vec![read_all.clone(), write.clone()])), [1, 1, 1]).0.unwrap_err() {
        SimtError::SharedRace { byte: 0, first, second, .. } => {
            assert_eq!((second.thread, second.kind, first.kind), (0, AccessKind::Write, AccessKind::Read));
            assert_ne!(first.thread, 0);
        }
        e => panic!("{e}"),
    }
    // Only thread 0 read it: its own write is fine; after a barrier anyone may write.
    let read_own = Stmt::If { cond: tid_is(0), then_body: vec![Stmt::Assign(Var(0), load_shared(int(0)))], else_body: vec![] };
    assert!(run(&program(4, initialized(vec![read_own, write.clone()])), [1, 1, 1]).0.is_ok());
    let write3 = Stmt::If { cond: tid_is(3), then_body: vec![Stmt::StoreShared { offset: int(0), value: int(1) }], else_body: vec![] };
    assert!(run(&program(4, initialized(vec![read_all, Stmt::Barrier, write3])), [1, 1, 1]).0.is_ok());
}

#[test]
fn accesses_of_earlier_blocks_are_forgotten() {
    // In block b, thread b writes byte 0: different threads, but never in the same block.
    let body = vec![Stmt::If {
        cond: Expr::Cmp(CmpOp::Eq, Box::new(Expr::ThreadIdx), Box::new(Expr::BlockIdx(0))),
        then_body: vec![Stmt::StoreShared { offset: int(0), value: int(1) }],
        else_body: vec![],
    }];
    let stats = run(&program(4, body), [4, 1, 1]).0.expect("no race");
    assert_eq!(stats.blocks, 4);
    // `If` for 4 threads, the store for 1, per block.
    assert_eq!(stats.thread_instructions, 4 * 5);
}

#[test]
fn an_out_of_bounds_global_store_names_its_source_location() {
    // Thread t stores element t + 2 of a 4-element tensor: thread 2 is the first outside.
    let (span, source) = at("store(out, v, [0])");
    let index = Expr::Cast { to: Ty::I64, value: Box::new(bin(BinaryOp::Add, Expr::ThreadIdx, int(2))), from_unsigned: false, to_unsigned: false };
    let body = vec![source, Stmt::StoreGlobal { param: 0, index, value: int(1) }];
    let e = run(&program(4, body), [1, 1, 1]).0.unwrap_err();
    assert_eq!(
        e,
        SimtError::GlobalOutOfBounds {
            block: [0, 0, 0],
            thread: 2,
            what: "store",
            param: "out".into(),
            index: 4,
            len: 4,
            at: Some((span, "store(out, v, [0])".into())),
        }
    );
    assert_eq!(
        e.to_string(),
        format!("store index 4 is outside `out` (4 elements) in block [0, 0, 0], thread 2, at `store(out, v, [0])` (source bytes {}..{})", span.start, span.end)
    );
    let (line, col, _) = line_col(SOURCE, span.start);
    assert_eq!((line, col), (4, 5));
}

#[test]
fn other_faults_carry_the_location_of_the_last_source_statement() {
    let (span, source) = at("load_shared(next)");
    let loc = Some((span, "load_shared(next)".to_string()));
    // Shared access past the buffer.
    let body = vec![source.clone(), Stmt::Assign(Var(0), load_shared(int(62)))];
    assert_eq!(
        run(&program(4, body), [1, 1, 1]).0.unwrap_err(),
        SimtError::SharedOutOfBounds { block: [0, 0, 0], thread: 0, offset: 62, size: 4, bytes: 64, at: loc.clone() }
    );
    // Division by zero (in thread 3 only).
    let body = vec![source.clone(), Stmt::Assign(Var(0), bin(BinaryOp::Div, int(1), bin(BinaryOp::Sub, int(3), Expr::ThreadIdx)))];
    assert_eq!(run(&program(4, body), [1, 1, 1]).0.unwrap_err(), SimtError::DivisionByZero { block: [0, 0, 0], thread: 3, at: loc.clone() });
    // A barrier under a thread-dependent `If`.
    let body = vec![source.clone(), Stmt::If { cond: tid_is(1), then_body: vec![Stmt::Barrier], else_body: vec![] }];
    assert_eq!(run(&program(4, body), [1, 1, 1]).0.unwrap_err(), SimtError::DivergentBarrier { block: [0, 0, 0], at: loc.clone() });
    // Loop bounds that differ between threads.
    let body = vec![source, Stmt::For { var: Var(1), start: int(0), end: Expr::ThreadIdx, body: vec![] }];
    assert_eq!(run(&program(4, body), [1, 1, 1]).0.unwrap_err(), SimtError::DivergentLoop { block: [0, 0, 0], at: loc });
    // Before any `Source` statement there is no location.
    let body = vec![Stmt::Assign(Var(0), load_shared(int(64)))];
    let e = run(&program(4, body), [1, 1, 1]).0.unwrap_err();
    assert_eq!(e.location(), None);
    assert_eq!(e.to_string(), "shared-memory access at byte 64 (+4) is outside the 64-byte buffer in block [0, 0, 0], thread 0");
}

#[test]
fn the_location_follows_execution_into_and_out_of_loops_and_branches() {
    // The fault happens in the second iteration, after the loop body's own `Source`.
    let (_, first) = at("store_shared(slot, tid)");
    let (span, second) = at("load_shared(next)");
    let body = vec![
        first,
        Stmt::For {
            var: Var(1),
            start: int(0),
            end: int(2),
            body: vec![
                Stmt::If {
                    cond: Expr::Cmp(CmpOp::Eq, Box::new(Expr::Var(Var(1))), Box::new(int(1))),
                    then_body: vec![Stmt::Assign(Var(0), load_shared(int(100)))],
                    else_body: vec![],
                },
                second,
            ],
        },
    ];
    let e = run(&program(4, body), [1, 1, 1]).0.unwrap_err();
    assert_eq!(e.location(), Some(&(span, "load_shared(next)".to_string())));
}

#[test]
fn shuffle_xor_exchanges_registers_within_each_warp_and_needs_every_thread() {
    // r0 = tid; r1 = r0 of lane ^ 5; out[tid] = r1, over two warps.
    let index = Expr::Cast { to: Ty::I64, value: Box::new(Expr::ThreadIdx), from_unsigned: false, to_unsigned: false };
    let body = vec![
        Stmt::Assign(Var(0), Expr::ThreadIdx),
        Stmt::ShuffleXor { dst: Var(1), src: Var(0), lane_mask: 5 },
        Stmt::StoreGlobal { param: 0, index, value: Expr::Var(Var(1)) },
    ];
    let (r, out) = run(&program(64, body), [1, 1, 1]);
    r.expect("runs");
    let want: Vec<f64> = (0..64usize).map(|t| ((t & !31) | ((t & 31) ^ 5)) as f64).collect();
    assert_eq!(out.to_f64(), want);
    // Under a thread-dependent `If` it is an error, with the location.
    let (span, source) = at("load_shared(next)");
    let body = vec![
        source,
        Stmt::If { cond: tid_is(0), then_body: vec![Stmt::ShuffleXor { dst: Var(1), src: Var(0), lane_mask: 1 }], else_body: vec![] },
    ];
    assert_eq!(
        run(&program(32, body), [1, 1, 1]).0.unwrap_err(),
        SimtError::DivergentWarpInstruction { block: [0, 0, 0], what: "shfl.sync", at: Some((span, "load_shared(next)".into())) }
    );
}

#[test]
fn float_to_integer_casts_round_and_saturate() {
    // out[0] = cast.i64(cast.TO(f)), the inner cast from f64 (unsigned targets widen as
    // unsigned).
    let cases: [(f64, Ty, bool, i64); 8] = [
        (1e30, Ty::I64, false, i64::MAX),
        (-1e30, Ty::I64, false, i64::MIN),
        (2.5, Ty::I32, false, 2),
        (-3.5, Ty::I32, false, -4),
        (1e10, Ty::I32, false, i32::MAX as i64),
        (300.0, Ty::I8, true, 255),
        (-1.0, Ty::I8, true, 0),
        (f64::NAN, Ty::I16, false, 0),
    ];
    for (value, to, to_unsigned, want) in cases {
        let cast = Expr::Cast { to, value: Box::new(Expr::Float(Ty::F64, value)), from_unsigned: false, to_unsigned };
        let wide = Expr::Cast { to: Ty::I64, value: Box::new(cast), from_unsigned: to_unsigned, to_unsigned: false };
        let p = Program {
            name: "k".into(),
            params: vec![Param::Global { name: "out".into(), dtype: DType::I64 }],
            block_threads: 1,
            shared_bytes: 0,
            vars: vec![],
            body: vec![Stmt::StoreGlobal { param: 0, index: Expr::Int(Ty::I64, 0), value: wide }],
        };
        let mut args = vec![Arg::Tensor(HostTensor::zeros(DType::I64, &[1]))];
        simt::launch(&p, [1, 1, 1], &mut args).unwrap();
        let Arg::Tensor(out) = &args[0] else { unreachable!() };
        assert_eq!(out.code(0) as i64, want, "{value} to {to:?} (unsigned {to_unsigned})");
    }
}

#[test]
fn reading_a_shared_byte_nothing_wrote_is_an_error() {
    // Threads 0..4 write their slots (bytes 0..16); thread 0 then reads byte 16, which no one
    // wrote in this block. On a GPU it holds what an earlier block left.
    let body = vec![
        Stmt::StoreShared { offset: slot(Expr::ThreadIdx), value: Expr::ThreadIdx },
        Stmt::Barrier,
        at("load_shared(next)").1,
        Stmt::If { cond: tid_is(0), then_body: vec![Stmt::Assign(Var(0), load_shared(int(16)))], else_body: vec![] },
    ];
    let e = run(&program(4, body), [1, 1, 1]).0.unwrap_err();
    assert_eq!(e, SimtError::SharedUninitialized { block: [0, 0, 0], thread: 0, byte: 16, at: location("load_shared(next)") });
    assert!(e.to_string().contains("nothing in block [0, 0, 0] wrote"), "{e}");
    // The second block starts with nothing written again, even where the first block wrote.
    let body = vec![
        Stmt::If {
            cond: Expr::Cmp(CmpOp::Eq, Box::new(Expr::BlockIdx(0)), Box::new(int(0))),
            then_body: vec![Stmt::StoreShared { offset: slot(Expr::ThreadIdx), value: Expr::ThreadIdx }],
            else_body: vec![],
        },
        Stmt::Barrier,
        Stmt::Assign(Var(0), load_shared(slot(Expr::ThreadIdx))),
    ];
    match run(&program(4, body), [2, 1, 1]).0.unwrap_err() {
        SimtError::SharedUninitialized { block, .. } => assert_eq!(block, [1, 0, 0]),
        e => panic!("{e}"),
    }
}
