// matvec_dot4 with subgroup sums, laid out as matvec_subgroup.wgsl's `matvec_sg` (compiled
// only where the device has both subgroups and integer dot products).
const SG_ROWS: u32 = 8u;

@compute @workgroup_size(64)
fn matvec_dot4_sg(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(subgroup_id) sg_id: u32,
                  @builtin(num_subgroups) n_sg: u32,
                  @builtin(subgroup_invocation_id) lane: u32,
                  @builtin(subgroup_size) sg_size: u32) {
    let r0 = (wid.x + wid.y * nwg.x) * SG_ROWS;
    let n = min(P.n, NT);
    let nsub = P.k / 32u;
    for (var slot = sg_id; slot < SG_ROWS; slot += n_sg) {
        let r = r0 + slot;
        if (r >= P.rows) {
            break;
        }
        var acc: array<f32, 8>;
        let rb = r * P.row_bytes;
        for (var s = lane; s < nsub; s += sg_size) {
            for (var t = 0u; t < n; t++) {
                acc[t] += dot_blk(rb + s * BLOCK_BYTES, (t * nsub + s) * 9u);
            }
        }
        for (var t = 0u; t < n; t++) {
            let v = subgroupAdd(acc[t]);
            if (lane == 0u) {
                Y[P.y_off + t * P.y_stride + r] = v;
            }
        }
    }
}
