// colsum.wgsl — the two-level, deterministic column sum both models' WGSL kernels use (the VAE's
// bias gradients, the language model's bias and LayerNorm gradients and its position-embedding
// gradient): `sums[i] = Σ_r rows[r][i]` over `rows` rows of `cols` f32, then zeros up to `out`.
// Launched by src/backend/wgsl/colsum.rs; chunking from src/backend/launch.rs col_chunks.
// Layout: row-major f32, rows [rows][cols]; parts [chunks][cols]; sums [out].
//
// Bindings (group 0):
//   0: uniform  ColParams { rows, cols, chunk, out }  (col_final: rows = the number of chunks)
//   1: storage, read        rows:  array<f32> [rows][cols]             (col_partial)
//   2: storage, read_write  parts: array<f32> [chunks][cols] partials  (col_partial writes,
//                                                                       col_final reads)
//   3: storage, read_write  sums:  array<f32> [out]                    (col_final)
//
// Entry points and workgroups:
//   col_partial  workgroup 64, grid (ceil(cols/64), chunks): lane j of block x sums rows
//                [y·chunk, min((y+1)·chunk, rows)) of column x·64 + j in order into
//                parts[y][x·64 + j] (lanes adjacent by column: coalesced).
//   col_final    workgroup 256, one invocation per output i < out on a 2-D grid
//                (i = gid.x + gid.y · 256 · nwg.x): sums[i] = Σ_{y < chunks} parts[y][i] in
//                order for i < cols, else 0.
// Fixed order, no atomics: the same bits every run.

struct ColParams {
    rows: u32,
    cols: u32,
    chunk: u32,
    out: u32,
}

@group(0) @binding(0) var<uniform> col_p: ColParams;
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read_write> parts: array<f32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;

@compute @workgroup_size(64)
fn col_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = wid.x * 64u + lid;
    let cols = col_p.cols;
    if (j >= cols) {
        return;
    }
    let r0 = wid.y * col_p.chunk;
    let r1 = min(r0 + col_p.chunk, col_p.rows);
    var s = 0.0;
    for (var r = r0; r < r1; r = r + 1u) {
        s = s + rows[r * cols + j];
    }
    parts[wid.y * cols + j] = s;
}

@compute @workgroup_size(256)
fn col_final(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * 256u * nwg.x;
    if (i >= col_p.out) {
        return;
    }
    var s = 0.0;
    if (i < col_p.cols) {
        for (var k = 0u; k < col_p.rows; k = k + 1u) {
            s = s + parts[k * col_p.cols + i];
        }
    }
    sums[i] = s;
}
