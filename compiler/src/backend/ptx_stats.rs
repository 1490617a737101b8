//! Statistics of a PTX kernel's text: how many instructions of each kind it has, and which of
//! them run in each loop. The measurements the quantized-matmul work is steered by
//! (`tlc stats`, the `qmatmul_bench` example), computed from the PTX alone.
//!
//! Expects PTX as the code generators and NVIDIA's tools write it: one instruction per line
//! ending in `;`, labels `NAME:` at the start of a line, `//` comments. Guarantees, for any text
//! (malformed included), an answer without a panic:
//! * an *instruction* is a statement inside a function body that is not a directive (`.reg`,
//!   `.shared`, ...), a label or a brace; its *opcode* is its first word after any guard
//!   predicate (`@%p1`, `@!%p1`), its *family* the opcode up to the first `.` (`ld.global.f32`
//!   is in `ld`; [`Kind`] groups families by what they cost);
//! * the loops are the natural loops of the control-flow graph of basic blocks (split at labels
//!   and after branches, `ret` and `exit`), one per loop header: a back edge is a branch to a
//!   block still on the depth-first search stack, and its loop is the header with every block
//!   that reaches the branch without passing the header. A loop's counts include its nested
//!   loops' instructions once each (static counts: one pass through every block of the loop).

use std::collections::{BTreeMap, BTreeSet};

/// A group of instructions by cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Loads and stores of global memory, `cp.async` included.
    GlobalMemory,
    /// Loads and stores of shared memory, `ldmatrix` included.
    SharedMemory,
    /// `mma`, `wgmma`.
    TensorCore,
    /// `bar`, `barrier`, `cp.async.wait_group` and `commit_group`, `membar`, `fence`.
    Synchronization,
    /// `bra`, `ret`, `exit`, `call`.
    Control,
    /// Everything else: arithmetic, conversions, moves, bit operations, predicates.
    Alu,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::GlobalMemory, Kind::SharedMemory, Kind::TensorCore, Kind::Synchronization, Kind::Control, Kind::Alu];

    pub fn name(self) -> &'static str {
        match self {
            Kind::GlobalMemory => "global",
            Kind::SharedMemory => "shared",
            Kind::TensorCore => "tensor",
            Kind::Synchronization => "sync",
            Kind::Control => "control",
            Kind::Alu => "alu",
        }
    }

    /// The kind of an instruction with this opcode.
    pub fn of(opcode: &str) -> Kind {
        let family = opcode.split('.').next().unwrap_or("");
        let space = |s: &str| opcode.split('.').any(|p| p == s);
        match family {
            "mma" | "wgmma" => Kind::TensorCore,
            "bar" | "barrier" | "membar" | "fence" => Kind::Synchronization,
            "cp" if opcode.contains("wait_group") || opcode.contains("commit_group") || opcode.contains("wait_all") => Kind::Synchronization,
            "cp" => Kind::GlobalMemory,
            "ldmatrix" | "stmatrix" => Kind::SharedMemory,
            "ld" | "st" | "atom" | "red" | "ldu" if space("shared") => Kind::SharedMemory,
            "ld" | "st" | "atom" | "red" | "ldu" if space("global") => Kind::GlobalMemory,
            "bra" | "ret" | "exit" | "call" | "brx" => Kind::Control,
            _ => Kind::Alu,
        }
    }
}

/// Counts of instructions: in all, by kind and by opcode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub instructions: usize,
    pub by_kind: BTreeMap<Kind, usize>,
    pub by_opcode: BTreeMap<String, usize>,
}

impl Counts {
    fn add(&mut self, opcode: &str) {
        self.instructions += 1;
        *self.by_kind.entry(Kind::of(opcode)).or_default() += 1;
        *self.by_opcode.entry(opcode.to_string()).or_default() += 1;
    }

    fn merge(&mut self, other: &Counts) {
        self.instructions += other.instructions;
        for (k, n) in &other.by_kind {
            *self.by_kind.entry(*k).or_default() += n;
        }
        for (k, n) in &other.by_opcode {
            *self.by_opcode.entry(k.clone()).or_default() += n;
        }
    }

    pub fn kind(&self, kind: Kind) -> usize {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }

    /// How many instructions have an opcode starting with `prefix` (`"bar"`, `"ld.shared"`).
    pub fn with_prefix(&self, prefix: &str) -> usize {
        self.by_opcode.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, n)| n).sum()
    }
}

/// One natural loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loop {
    /// The label of its header block (`$L__BB0_4`), or `entry` for the first block.
    pub header: String,
    /// How many loops enclose it.
    pub depth: usize,
    /// Whether it contains no other loop.
    pub innermost: bool,
    /// The instructions of its blocks (nested loops included).
    pub counts: Counts,
}

/// The statistics of one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelStats {
    pub name: String,
    pub counts: Counts,
    /// The loops, in the order of their headers in the text.
    pub loops: Vec<Loop>,
}

impl KernelStats {
    /// The innermost loop (one containing no other) with the most instructions, if any: what
    /// runs most often. For a matmul, the loop over k tiles, also where an outer loop walks
    /// the quantization groups.
    pub fn hot_loop(&self) -> Option<&Loop> {
        self.loops.iter().filter(|l| l.innermost).max_by_key(|l| (l.counts.instructions, std::cmp::Reverse(l.depth)))
    }
}

struct Block {
    label: Option<String>,
    counts: Counts,
    /// Branch targets (labels), and whether control can fall through to the next block.
    targets: Vec<String>,
    falls_through: bool,
}

/// The statistics of every kernel (`.entry`) and function (`.func`) with a body in `ptx`.
pub fn analyze(ptx: &str) -> Vec<KernelStats> {
    let mut kernels = Vec::new();
    let mut lines = ptx.lines().map(strip_comment).peekable();
    while let Some(line) = lines.next() {
        let Some(name) = function_name(line) else { continue };
        // The body: from the first `{` to the brace that closes it.
        let mut depth = 0usize;
        let mut started = false;
        let mut body = Vec::new();
        for line in lines.by_ref() {
            let opens = line.matches('{').count();
            let closes = line.matches('}').count();
            if !started && line.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            depth += opens;
            started |= opens > 0;
            if started {
                body.push(line);
            }
            depth = depth.saturating_sub(closes);
            if started && depth == 0 {
                break;
            }
        }
        kernels.push(stats_of(name, &body));
    }
    kernels
}

fn strip_comment(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// `NAME` of a line `.visible .entry NAME(` or `.func (...) NAME(`.
fn function_name(line: &str) -> Option<String> {
    let t = line.trim();
    if !(t.contains(".entry") || t.contains(".func")) || t.starts_with("//") || t.starts_with(".extern") {
        return None;
    }
    let before_paren = t.split('(').find(|part| {
        let w = part.split_whitespace().last().unwrap_or("");
        !w.is_empty() && !w.starts_with('.') && !w.contains(')')
    })?;
    let name = before_paren.split_whitespace().last()?.trim_end_matches(['(', ' ']);
    (!name.is_empty() && !name.starts_with('.')).then(|| name.to_string())
}

fn stats_of(name: String, body: &[&str]) -> KernelStats {
    let mut blocks: Vec<Block> = vec![Block { label: Some("entry".into()), counts: Counts::default(), targets: Vec::new(), falls_through: true }];
    let mut counts = Counts::default();
    // Statements end with `;` and may span lines (`mma.sync` writes its operands on four);
    // labels and scope braces stand on lines of their own or before a statement.
    let text = body.join("\n");
    for chunk in text.split(';') {
        let mut statement = String::new();
        for line in chunk.lines() {
            let mut line = line.trim();
            if line == "{" || line == "}" {
                continue;
            }
            while let Some((label, rest)) = line.split_once(':') {
                // A label is an identifier (`$L__BB0_4`); `shared::cluster` in an opcode is not.
                let label = label.trim();
                if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                    break;
                }
                blocks.push(Block { label: Some(label.to_string()), counts: Counts::default(), targets: Vec::new(), falls_through: true });
                line = rest.trim();
            }
            statement.push(' ');
            statement.push_str(line);
        }
        let text = statement.trim().trim_start_matches(['{', '}']).trim();
        if text.is_empty() || text.starts_with('.') || text.starts_with('{') || text.starts_with('}') {
            continue;
        }
        let mut words = text.split_whitespace();
        let mut first = words.next().unwrap_or("");
        let guarded = first.starts_with('@');
        if guarded {
            first = words.next().unwrap_or("");
        }
        let opcode = first;
        if opcode.is_empty() {
            continue;
        }
        counts.add(opcode);
        let block = blocks.last_mut().expect("the entry block");
        block.counts.add(opcode);
        let family = opcode.split('.').next().unwrap_or("");
        if matches!(family, "bra" | "ret" | "exit" | "brx") {
            if family == "bra"
                && let Some(target) = words.next()
            {
                block.targets.push(target.trim_end_matches(',').to_string());
            }
            block.falls_through = guarded;
            blocks.push(Block { label: None, counts: Counts::default(), targets: Vec::new(), falls_through: true });
        }
    }
    KernelStats { name, counts, loops: natural_loops(&blocks) }
}

fn natural_loops(blocks: &[Block]) -> Vec<Loop> {
    let index: BTreeMap<&str, usize> = blocks.iter().enumerate().filter_map(|(i, b)| b.label.as_deref().map(|l| (l, i))).collect();
    let successors: Vec<Vec<usize>> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut s: Vec<usize> = b.targets.iter().filter_map(|t| index.get(t.as_str()).copied()).collect();
            if b.falls_through && i + 1 < blocks.len() {
                s.push(i + 1);
            }
            s
        })
        .collect();
    let mut predecessors = vec![Vec::new(); blocks.len()];
    for (i, s) in successors.iter().enumerate() {
        for &j in s {
            predecessors[j].push(i);
        }
    }
    // Back edges by an iterative depth-first search from the entry.
    let mut back_edges: Vec<(usize, usize)> = Vec::new();
    let mut state = vec![0u8; blocks.len()]; // 0 unseen, 1 on the stack, 2 done
    let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
    state[0] = 1;
    while let Some(&mut (node, ref mut next)) = stack.last_mut() {
        if let Some(&succ) = successors[node].get(*next) {
            *next += 1;
            match state[succ] {
                0 => {
                    state[succ] = 1;
                    stack.push((succ, 0));
                }
                1 => back_edges.push((node, succ)),
                _ => {}
            }
        } else {
            state[node] = 2;
            stack.pop();
        }
    }
    // One loop per header: the union of its back edges' natural loops.
    let mut bodies: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (tail, header) in back_edges {
        let body = bodies.entry(header).or_insert_with(|| BTreeSet::from([header]));
        let mut work = vec![tail];
        while let Some(b) = work.pop() {
            if body.insert(b) {
                work.extend(predecessors[b].iter().copied());
            }
        }
    }
    let all: Vec<(usize, BTreeSet<usize>)> = bodies.into_iter().collect();
    all.iter()
        .map(|(header, body)| {
            let mut counts = Counts::default();
            for &b in body {
                counts.merge(&blocks[b].counts);
            }
            let depth = all.iter().filter(|(h, other)| h != header && other.contains(header)).count();
            let innermost = !all.iter().any(|(h, _)| h != header && body.contains(h));
            Loop { header: blocks[*header].label.clone().unwrap_or_else(|| format!("block {header}")), depth, innermost, counts }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTX: &str = r#"
.version 8.0
.target sm_80
.address_size 64

	// .globl	k
.visible .entry k(
	.param .u64 k_param_0,
	.param .u32 k_param_1
)
.maxntid 128, 1, 1
{
	.reg .pred 	%p<4>;
	.reg .b32 	%r<9>;
	.shared .align 16 .b8 smem[64];

	ld.param.u32 	%r1, [k_param_1];
	mov.u32 	%r2, 0;
$L__BB0_1:                              // outer loop
	mov.u32 	%r3, 0;
$L__BB0_2:                              // inner loop
	ld.shared.u32 	%r4, [smem];
	add.s32 	%r3, %r3, 1;
	setp.lt.u32 	%p1, %r3, 4;
	@%p1 bra 	$L__BB0_2;
	bar.sync 	0;
	cp.async.ca.shared.global [smem], [%rd1], 16;
	cp.async.wait_group 0;
	add.s32 	%r2, %r2, 1;
	setp.lt.u32 	%p2, %r2, %r1;
	@%p2 bra 	$L__BB0_1; // back to the outer header
	@%p3 bra 	$L__BB0_4;
	st.global.u32 	[%rd1], %r2;
$L__BB0_4:
	ret;

}
"#;

    #[test]
    fn counts_loops_and_kinds_of_a_small_kernel() {
        let stats = analyze(PTX);
        assert_eq!(stats.len(), 1);
        let k = &stats[0];
        assert_eq!(k.name, "k");
        // 16 instructions: ld.param, mov, mov, ld.shared, add, setp, bra, bar, cp.async,
        // cp.async.wait_group, add, setp, bra, bra, st.global, ret.
        assert_eq!(k.counts.instructions, 16);
        assert_eq!(k.counts.kind(Kind::SharedMemory), 1);
        assert_eq!(k.counts.kind(Kind::GlobalMemory), 2);
        assert_eq!(k.counts.kind(Kind::Synchronization), 2);
        assert_eq!(k.counts.kind(Kind::Control), 4);
        assert_eq!(k.counts.with_prefix("cp.async"), 2);
        assert_eq!(k.loops.len(), 2);
        let (outer, inner) = (&k.loops[0], &k.loops[1]);
        assert_eq!((outer.header.as_str(), outer.depth), ("$L__BB0_1", 0));
        assert_eq!((inner.header.as_str(), inner.depth), ("$L__BB0_2", 1));
        // The inner loop: ld.shared, add, setp, bra. The outer: mov and the rest up to its
        // back edge (the inner loop's 4 included).
        assert_eq!(inner.counts.instructions, 4);
        assert_eq!(outer.counts.instructions, 11);
        assert!(inner.innermost && !outer.innermost);
        // The hot loop is the inner one, though the outer has more instructions.
        assert_eq!(k.hot_loop().map(|l| l.header.as_str()), Some("$L__BB0_2"));
    }

    #[test]
    fn a_loop_whose_blocks_are_laid_out_apart_is_one_loop() {
        // The header jumps forward to a block placed after the exit, which jumps back.
        let ptx = ".entry f()\n{\nmov.u32 %r1, 0;\n$H:\nadd.s32 %r1, %r1, 1;\nbra.uni $B;\n$X:\nret;\n$B:\nsetp.lt.u32 %p1, %r1, 9;\n@%p1 bra $H;\nbra.uni $X;\n}\n";
        let k = &analyze(ptx)[0];
        assert_eq!(k.loops.len(), 1);
        // add, bra.uni, setp, @bra: the exit's `ret` and the trailing `bra.uni $X` are outside.
        assert_eq!(k.loops[0].counts.instructions, 4);
    }

    #[test]
    fn any_text_gives_an_answer() {
        for text in ["", "}", "{", ".entry", ".entry (", ".entry x(\n{\n@", ".entry x(\n{\n$a: $b: bra $a;\n}", ".func;\n", "bra $L;\n$L:\n"] {
            let _ = analyze(text);
        }
        let k = &analyze(".entry x(\n{\n$a: $b: bra.uni $a;\n}")[0];
        assert_eq!(k.loops.len(), 1);
        // A statement over several lines is one instruction.
        let k = &analyze(".entry x(\n{\n\tmma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32\n\t\t{%f1, %f2},\n\t\t{%r1},\n\t\t{%f3};\n\tret;\n}")[0];
        assert_eq!((k.counts.instructions, k.counts.kind(Kind::TensorCore)), (2, 1));
        // An opcode with `::` is not a label.
        let k = &analyze(".entry x(\n{\ncp.async.bulk.shared::cluster.global [a], [b], 16;\n}")[0];
        assert_eq!(k.counts.by_opcode.keys().collect::<Vec<_>>(), ["cp.async.bulk.shared::cluster.global"]);
    }
}
