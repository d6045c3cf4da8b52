//! The CPU backend borrows weights shared from a store (the model's file) instead of copying
//! them, gives the same products as copied weights, and hands what each operation read back
//! to the store's residency hook (lazy paging) — for single matrices and stacks alike.

use std::sync::{Arc, Mutex};

use compute::backend::{Backend, Cpu, Span};
use compute::KvDtype;
use quant::{GgmlType, Residency, StoreRange, WeightStore};

/// A store of one buffer that records the ranges handed back, or pages nothing.
struct Store {
    data: Vec<u8>,
    paging: bool,
    back: Mutex<Vec<(usize, usize)>>,
}

impl Residency for Store {
    fn done_with(&self, bytes: &[u8]) {
        let a = bytes.as_ptr() as usize - self.data.as_ptr() as usize;
        self.back.lock().unwrap().push((a, a + bytes.len()));
    }
}

impl WeightStore for Store {
    fn bytes(&self, r: StoreRange) -> &[u8] {
        let a = r.start as usize;
        self.data.get(a..a + r.len as usize).unwrap_or(&[])
    }
    fn residency(&self) -> Option<&dyn Residency> {
        self.paging.then_some(self as &dyn Residency)
    }
}

fn q8_0(rows: usize, cols: usize, seed: u32) -> Vec<u8> {
    let rb = GgmlType::Q8_0.row_bytes(cols as u64).unwrap() as usize;
    let mut s = seed;
    let mut out = vec![0u8; rows * rb];
    for r in 0..rows {
        let row: Vec<f32> = (0..cols)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect();
        quant::quantize_row(GgmlType::Q8_0, &row, &mut out[r * rb..][..rb]).unwrap();
    }
    out
}

#[test]
fn shared_weights_are_borrowed_paged_and_give_the_copied_products() {
    let (rows, cols) = (32, 64);
    let one = q8_0(rows, cols, 1);
    let stack = q8_0(3 * rows, cols, 2);
    // The matrix sits after a 96-byte header, the stack after it.
    let mut data = vec![7u8; 96];
    data.extend_from_slice(&one);
    data.extend_from_slice(&stack);
    for paging in [false, true] {
        let store = Arc::new(Store {
            data: data.clone(),
            paging,
            back: Mutex::new(Vec::new()),
        });
        let dyn_store: Arc<dyn WeightStore> = store.clone();
        let at = |start: usize, len: usize| StoreRange {
            part: 0,
            start: start as u64,
            len: len as u64,
        };
        let cpu = Cpu::new(KvDtype::F16);
        let shared = cpu
            .share_weights(GgmlType::Q8_0, rows, cols, &dyn_store, at(96, one.len()))
            .unwrap();
        let copied = cpu
            .upload_weights(GgmlType::Q8_0, rows, cols, &one)
            .unwrap();
        assert!(shared.is_shared() && !copied.is_shared());
        let shared_stack = cpu
            .share_stack(
                GgmlType::Q8_0,
                3,
                rows,
                cols,
                &dyn_store,
                at(96 + one.len(), stack.len()),
            )
            .unwrap();
        let copied_stack = cpu
            .upload_stack(GgmlType::Q8_0, 3, rows, cols, &stack)
            .unwrap();

        let n = 2;
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.4)
            .collect();
        let xt = cpu.upload(&x);
        let product = |w| {
            let y = cpu.tensor(n * rows);
            cpu.matmul(w, Span::rows(&xt, cols), n, Span::rows(&y, rows))
                .unwrap();
            cpu.read(&y, n * rows).unwrap()
        };
        assert_eq!(product(&shared), product(&copied), "paging {paging}");
        let ids = cpu.tensor(n);
        cpu.write_ids(&ids, &[2, 0]).unwrap();
        let by_id = |w| {
            let y = cpu.tensor(n * rows);
            cpu.matmul_id(w, &ids, Span::rows(&xt, cols), 1, n, Span::rows(&y, rows))
                .unwrap();
            cpu.read(&y, n * rows).unwrap()
        };
        assert_eq!(
            by_id(&shared_stack),
            by_id(&copied_stack),
            "paging {paging}"
        );

        let back = store.back.lock().unwrap().clone();
        if paging {
            // The matrix once, then stack members 2 and 0 (each its own slice).
            let per = stack.len() / 3;
            let s0 = 96 + one.len();
            assert_eq!(back[0], (96, 96 + one.len()));
            assert!(back.contains(&(s0 + 2 * per, s0 + 3 * per)), "{back:?}");
            assert!(back.contains(&(s0, s0 + per)), "{back:?}");
            assert!(back.iter().all(|&(a, b)| a >= 96 && b <= data.len()));
        } else {
            assert!(back.is_empty(), "{back:?}");
        }
    }
}

#[test]
fn a_shared_range_that_does_not_fit_is_an_error() {
    let store: Arc<dyn WeightStore> = Arc::new(Store {
        data: q8_0(4, 32, 3),
        paging: false,
        back: Mutex::new(Vec::new()),
    });
    let cpu = Cpu::new(KvDtype::F16);
    let past_end = StoreRange {
        part: 0,
        start: 34,
        len: 4 * 34,
    };
    assert!(cpu
        .share_weights(GgmlType::Q8_0, 4, 32, &store, past_end)
        .is_err());
    let wrong_shape = StoreRange {
        part: 0,
        start: 0,
        len: 4 * 34,
    };
    assert!(cpu
        .share_weights(GgmlType::Q8_0, 5, 32, &store, wrong_shape)
        .is_err());
}
