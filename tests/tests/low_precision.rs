//! Low-precision formats through the whole compiler: packed loads and stores, casts between
//! formats and arithmetic through the compute type. The same kernel runs for many pairs of
//! formats on the VM and on the SIMT simulator (which runs the generated per-thread code,
//! with the bit-level decoders and encoders); the outputs must be bit-identical, and the
//! conversions must equal a host computation from `compiler::dtype`.

use tl_compiler::dtype::DType;
use tl_compiler::ir::ConstValue;
use tl_runtime::{Arg, Backend, HostTensor, Module};
use tl_tests::repo_root;

fn formats() -> Vec<DType> {
    [
        "u1", "u2", "u3", "u4", "u7", "i2", "i3", "i4", "i7", "f3e1m1", "f4e2m1", "f5e2m2", "f6e2m3",
        "f6e3m2", "f7e3m3", "f7e5m1", "f8e4m3fn", "f8e5m2", "f8e4m3", "f8e3m4", "e8m0", "ue4m3", "ue5m3", "f16",
    ]
    .iter()
    .map(|n| DType::from_name(n).unwrap_or_else(|| panic!("{n}")))
    .collect()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_codes(rng: &mut Rng, dtype: DType, n: usize) -> HostTensor {
    let codes: Vec<u64> = (0..n).map(|_| rng.next()).collect();
    HostTensor::from_codes(dtype, &[n], &codes)
}

/// An output poisoned with a byte pattern (the same on every backend).
fn poisoned(dtype: DType, n: usize) -> HostTensor {
    let mut t = HostTensor::zeros(dtype, &[n]);
    t.data.iter_mut().for_each(|b| *b = 0xA5);
    t
}

fn same_bits(a: &HostTensor, b: &HostTensor, i: usize) -> bool {
    let (x, y) = (a.get(i), b.get(i));
    a.code(i) == b.code(i) || (x.is_nan() && y.is_nan())
}

#[test]
fn vm_and_simt_agree_bit_for_bit_on_every_format_pair() {
    let module = Module::from_file(repo_root().join("tests/kernels/low_precision.tl")).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let targets: Vec<DType> = ["f32", "f16", "bf16", "f8e4m3fn", "f4e2m1", "e8m0", "i8", "u4", "i3"]
        .iter()
        .map(|n| DType::from_name(n).unwrap())
        .collect();
    let mut pairs = 0;
    for w in formats() {
        for &v in &targets {
            let consts = [("W".to_string(), ConstValue::DType(w)), ("V".to_string(), ConstValue::DType(v))];
            let kernel = module.kernel(None, &consts).unwrap_or_else(|e| panic!("{w} -> {v}: {e}"));
            let n = 150 + (rng.next() % 100) as usize; // ragged: not a multiple of the block
            let (x, y) = (random_codes(&mut rng, w, n), random_codes(&mut rng, w, n));
            let args = vec![
                Arg::Scalar(n as f64),
                x.clone().into(),
                y.clone().into(),
                poisoned(v, n).into(),
                poisoned(w, n).into(),
                poisoned(w, n).into(),
            ];
            let mut vm_args = args.clone();
            kernel.launch(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{w} -> {v} vm: {e}"));
            let mut simt_args = args.clone();
            kernel.launch(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("{w} -> {v} simt: {e}"));
            for (slot, what) in [(3, "wide"), (4, "back"), (5, "product")] {
                let (a, b) = (vm_args[slot].tensor().unwrap(), simt_args[slot].tensor().unwrap());
                for i in 0..n {
                    assert!(
                        same_bits(a, b, i),
                        "{w} -> {v}, output {what}[{i}] (x = {}, y = {}): vm code {:#x} ({}), simt code {:#x} ({})",
                        x.get(i),
                        y.get(i),
                        a.code(i),
                        a.get(i),
                        b.code(i),
                        b.get(i)
                    );
                }
            }
            // The conversions against the format definitions directly.
            let wide = vm_args[3].tensor().unwrap();
            let back = vm_args[4].tensor().unwrap();
            for i in 0..n {
                let via_f32 = |d: DType, value: f64| if d.is_low_precision() && d.is_float() { DType::F32.round(value) } else { value };
                let expected = v.encode(via_f32(v, x.get(i)));
                let got = wide.code(i);
                assert!(got == expected || (wide.get(i).is_nan() && v.decode(expected).is_nan()), "{w} -> {v}: wide[{i}] of {}", x.get(i));
                let expected = w.encode(DType::F32.round(DType::F32.round(y.get(i)) * 3.0 - 0.5));
                assert!(back.code(i) == expected || (back.get(i).is_nan() && w.decode(expected).is_nan()), "{w}: back[{i}] of {}", y.get(i));
            }
            pairs += 1;
        }
    }
    println!("{pairs} format pairs agree");
}
