// Decode with subgroup sums (compiled only where the device has wgpu's SUBGROUP feature). Each subgroup takes rows slot, slot + num_subgroups, ...
// of the workgroup's SG_ROWS, its lanes striding over the row's sub-blocks, and one
// subgroupAdd per token replaces the workgroup-memory tree: no barriers, and no assumption
// about how invocations map to subgroups or how large they are (8 on lavapipe, 32 on
// NVIDIA and Apple, 32 or 64 on AMD, 8-32 on Intel).
const SG_ROWS: u32 = 8u;

@compute @workgroup_size(64)
fn matvec_sg(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(subgroup_id) sg_id: u32,
             @builtin(num_subgroups) n_sg: u32,
             @builtin(subgroup_invocation_id) lane: u32,
             @builtin(subgroup_size) sg_size: u32) {
    let r0 = (wid.x + wid.y * nwg.x) * SG_ROWS;
    let n = min(P.n, NT);
    let nsub = (P.k + 31u) / 32u;
    for (var slot = sg_id; slot < SG_ROWS; slot += n_sg) {
        let r = r0 + slot;
        if (r >= P.rows) {
            break;
        }
        var acc: array<f32, 8>;
        let rb = r * P.row_bytes;
        for (var s = lane; s < nsub; s += sg_size) {
            load_sub(rb, s);
            for (var t = 0u; t < n; t++) {
                acc[t] += sub_dot(P.x_off + t * P.x_stride, s);
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
