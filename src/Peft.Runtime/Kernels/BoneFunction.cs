using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// The Bone (PEFT's MiSS) layer as one autograd function: y = x·W'ᵀ + b + Σₖ fold_rₖ(x)·Dₖ with W and b frozen, where
    /// fold_r(x) [n, r] = Σ_J x[…, J·r:(J+1)·r] sums the input's r-wide column blocks, each Dₖ [rₖ, out] is a Bone
    /// block, and W' is W, or W after one Bat block D [out/r, r, r] (every r × r tile W_IJ becomes W_IJ + W_IJ·D_I + D_I).
    /// </summary>
    /// <remarks>
    /// <para><b>Bone</b> runs one of two arithmetics, whichever costs less for the shape (measured; see
    /// benchmarks/README.md). <i>Thin</i>, for few rows (n·Σr &lt; 32·in): ΔW[o, i] = D[i mod r, o] is never formed;
    /// forward writes b + fold(x)·D into the output buffer and libtorch's GEMM adds x·Wᵀ into it in place; backward
    /// writes (dY·Dᵀ) broadcast over the in/r blocks into dX and the GEMM adds dY·W into it. <i>Dense</i>, for many
    /// rows: the two thin products and the broadcast cost more than one pass over W, so forward and backward each form
    /// W' = W + ΔW (one streaming pass) and run one GEMM, y = b + x·W'ᵀ and dX = dY·W'. W' lives in a per-thread scratch
    /// buffer for the length of one call and is never saved. Either way forward saves only fold(x), [n, r], and D: no
    /// copy of x (the frozen layer needs none either), and dD = fold(x)ᵀ·dY is one more GEMM. The fold is a node of its own (<see cref="FoldFunction"/>) passed to this function
    /// as an input, so that with <c>create_graph</c> the saved fold still leads back to x and second derivatives are
    /// right; this function returns no gradient for it (dX is complete), so in first-order backward that node receives
    /// nothing and does no work.</para>
    /// <para><b>Bat.</b> ΔW_IJ = W_IJ·D_I + D_I depends on W, so there is no thin form: the function forms
    /// W' = W + ΔW once per forward (a hand-written pass over W's tiles) and runs one GEMM. Backward needs
    /// G = dYᵀ·x, [out, in]: one more GEMM as large as the layer's own, which no arrangement avoids (dD_I mixes every
    /// tile W_IJ with its own slice of dYᵀ·x), so Bat costs about one and a half frozen layers. Then
    /// dD_I = Σ_J W_IJᵀ·G_IJ + Σ_J G_IJ, and dX = dY·W'. Bat saves x (the input itself, no copy: G needs it) and
    /// recomputes W' in backward rather than saving it: a saved W' would hold a second weight-sized tensor per layer for
    /// the life of the graph (64 MiB at 4096²), to spare one pass over W (about 2 % of the step at 1024²). G is formed at
    /// most 4 MiB at a time: a slab of output blocks into a buffer of that size, multiplied by its tiles of W and folded
    /// while still in cache, so at d = 4096 G's 64 MiB are never written to memory and read back twice (<see cref="BatGradient"/>).</para>
    /// <para><b>Scratch memory.</b> W' is weight-sized and lives for one call. Allocated afresh, a tensor
    /// above glibc's mmap threshold (32 MiB) is mapped and page-faulted anew on every call, which costs many times the
    /// pass that fills it (benchmarks/README.md has the figures). So it goes to one float32 buffer
    /// per thread, grown to the largest adapted weight formed so far and kept: the price is that much memory held
    /// between steps (64 MiB for a 4096 × 4096 layer), instead of a page fault per 4 KiB per step.</para>
    /// <para>Bone blocks after a Bat block add to the Bat-adapted weight, as merging them in that order would; a Bat
    /// block after another block acts on a weight that depends on that block and is left to the caller to compose.
    /// Gradients go to the input and the blocks only, never to W or b. Without a gradient to compute (inference,
    /// <c>no_grad</c>) the same arithmetic runs without an autograd node, so results are identical. Inputs other than
    /// dense float32 CPU tensors, and an unfrozen base, take the composed TorchSharp ops. Nothing in backward throws:
    /// an exception inside a custom backward ends the process in TorchSharp 0.107.</para>
    /// </remarks>
    public sealed class BoneFunction : torch.autograd.SingleTensorFunction<BoneFunction>
    {
        private const int InputIndex = 0, WeightIndex = 1, BiasIndex = 2, BatIndex = 3, FirstBoneIndex = 4;

        [ThreadStatic] private static SaveReport? _lastSave;

        /// <inheritdoc />
        public override string Name => nameof(BoneFunction);

        /// <summary>y = x·Wᵀ + b + fold_r(x)·D for one Bone block <paramref name="block"/> [r, out].</summary>
        /// <param name="input">The layer input, [..., in].</param>
        /// <param name="weight">The frozen base weight, [out, in].</param>
        /// <param name="bias">The frozen base bias, [out], or null.</param>
        /// <param name="block">The Bone block D.</param>
        public static Tensor Bone(Tensor input, Tensor weight, Tensor? bias, Tensor block) =>
            Linear(input, weight, bias, null, new[] { block });

        /// <summary>y = x·W'ᵀ + b, W' being <paramref name="weight"/> after the Bat block <paramref name="block"/> [out/r, r, r].</summary>
        /// <param name="input">The layer input, [..., in].</param>
        /// <param name="weight">The frozen base weight, [out, in].</param>
        /// <param name="bias">The frozen base bias, [out], or null.</param>
        /// <param name="block">The Bat block D.</param>
        public static Tensor Bat(Tensor input, Tensor weight, Tensor? bias, Tensor block) =>
            Linear(input, weight, bias, block, Array.Empty<Tensor>());

        /// <summary>
        /// y = x·W'ᵀ + b + Σₖ fold_rₖ(x)·Dₖ: the Bat block <paramref name="batBlock"/> (if any) acts on
        /// <paramref name="weight"/> first, then every Bone block of <paramref name="boneBlocks"/> adds its update, as
        /// merging the adapters in that order would.
        /// </summary>
        /// <param name="input">The layer input, [..., in].</param>
        /// <param name="weight">The base weight, [out, in] (frozen for the fused path).</param>
        /// <param name="bias">The base bias, [out], or null.</param>
        /// <param name="batBlock">A Bat block [out/r, r, r], or null.</param>
        /// <param name="boneBlocks">Bone blocks [rₖ, out], each rₖ dividing in.</param>
        public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias, Tensor? batBlock, IReadOnlyList<Tensor> boneBlocks)
        {
            FusedAutograd.ReleaseReturnedGradients();
            var shape = Validate(input, weight, bias, batBlock, boneBlocks);
            if (WhyNotFused(input, weight, bias, batBlock, boneBlocks) is { } why)
            {
                FusedKernels.Record(nameof(BoneFunction), why);
                return Composed(input, weight, bias, batBlock, boneBlocks);
            }

            int count = boneBlocks.Count;
            var needBone = boneBlocks.Select(d => d.requires_grad).ToArray();
            bool needBat = batBlock?.requires_grad == true;
            bool needsGraph = is_grad_enabled() && (input.requires_grad || needBat || needBone.Any(b => b));
            var ranks = boneBlocks.Select(d => d.shape[0]).ToArray();
            var args = new Args(shape.Rows, shape.In, shape.Out, input.shape, input.requires_grad, needBat, needBone,
                ranks, UseDense(shape.Rows, shape.In, ranks));

            using var scope = NewDisposeScope();
            using var x2 = input.view(shape.Rows, shape.In);
            // One fold per distinct block size, where the thin forward or a block's dD reads it. While x needs a
            // gradient the fold is the output of a node of its own (FoldFunction), so that a create_graph backward
            // reaches x through it.
            var folds = new Dictionary<long, Tensor>();
            bool foldGraph = needsGraph && input.requires_grad;
            for (int k = 0; k < count; k++)
            {
                long r = ranks[k];
                bool read = !args.Dense || (needsGraph && needBone[k]);
                if (read && !folds.ContainsKey(r)) folds[r] = foldGraph ? FoldFunction.Graph(x2, r) : Fold(x2, r);
            }
            if (!needsGraph)
            {
                Tensor plain;
                using (no_grad()) plain = Compute(x2, weight, bias, batBlock, boneBlocks, folds, args);
                return scope.MoveToOuter(plain);
            }

            var vars = new object?[FirstBoneIndex + 2 * count + 1];
            vars[InputIndex] = input;
            vars[WeightIndex] = weight;
            vars[BiasIndex] = bias;
            vars[BatIndex] = batBlock;
            for (int k = 0; k < count; k++)
            {
                vars[FirstBoneIndex + 2 * k] = boneBlocks[k];
                vars[FirstBoneIndex + 2 * k + 1] = folds.GetValueOrDefault(ranks[k]);
            }
            vars[^1] = args;

            // The scope frees the folds' handles afterwards (the saved variables hold their own references).
            var (output, released) = FusedAutograd.Run(() => apply(vars!));
            if (_lastSave is { } report) _lastSave = report with { OutputCacheReleased = released };
            return scope.MoveToOuter(output);
        }

        /// <summary>What the last fused forward on this thread saved for backward (for tests and benchmarks).</summary>
        internal static SaveReport? LastSave => _lastSave;

        /// <inheritdoc />
        public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
        {
            var args = (Args)vars[^1];
            var x = (Tensor)vars[InputIndex];
            var weight = (Tensor)vars[WeightIndex];
            var bias = vars[BiasIndex] as Tensor;
            var bat = vars[BatIndex] as Tensor;
            int count = args.BoneRanks.Length;
            var bones = new Tensor[count];
            var folds = new Dictionary<long, Tensor>();
            var foldOf = new Tensor?[count];
            for (int k = 0; k < count; k++)
            {
                bones[k] = (Tensor)vars[FirstBoneIndex + 2 * k];
                foldOf[k] = vars[FirstBoneIndex + 2 * k + 1] as Tensor;
                if (foldOf[k] is { } f) folds[args.BoneRanks[k]] = f;
            }

            Tensor y;
            using (var x2 = x.view(args.Rows, args.In)) y = Compute(x2, weight, bias, bat, bones, folds, args);

            // Only what backward reads. x for Bat's dD (G = dYᵀ·x); W (no copy) for dX and Bat's dD; the blocks for dX
            // and for recomputing W'; each Bone block's fold, [n, r], for its dD. Never a copy of x, never W'.
            bool needX = bat is not null && args.NeedBat;
            bool needW = args.NeedInput || needX;
            var saved = new List<Tensor?> { needX ? x : null, needW ? weight : null, bat };
            saved.AddRange(bones);
            for (int k = 0; k < count; k++) saved.Add(args.NeedBone[k] ? foldOf[k] : null);
            ctx.save_for_backward(saved!);
            ctx.save_data("args", args);
            FusedAutograd.Forwarded(ctx, y); // apply wraps its own handle on the output
            var distinctFolds = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
            for (int k = 0; k < count; k++) if (args.NeedBone[k] && foldOf[k] is { } f) distinctFolds.Add(f);
            _lastSave = new SaveReport(
                InputBytes: needX ? FusedAutograd.Bytes(x) : 0,
                ParameterBytes: (needW ? FusedAutograd.Bytes(weight) : 0) + FusedAutograd.Bytes(bat) + bones.Sum(FusedAutograd.Bytes),
                ActivationBytes: distinctFolds.Sum(FusedAutograd.Bytes),
                OutputCacheReleased: false);
            return y;
        }

        /// <inheritdoc />
        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad_output)
        {
            var args = (Args)ctx.get_data("args");
            int count = args.BoneRanks.Length;
            // Nothing here throws on purpose: shapes were checked in forward, and every case is handled.
            return FusedAutograd.Backward(grad_output, FirstBoneIndex + 2 * count + 1, grads =>
            {
                var saved = ctx.get_saved_variables();
                Tensor? x = saved[0], weight = saved[1], bat = saved[2];
                var bones = new Tensor[count];
                var folds = new Tensor?[count];
                for (int k = 0; k < count; k++)
                {
                    bones[k] = saved[3 + k];
                    folds[k] = saved[3 + count + k];
                }
                if (is_grad_enabled())
                    Backward(args, grad_output, x, weight, bat, bones, folds, grads, differentiable: true);
                else
                    using (no_grad())
                        Backward(args, grad_output, x, weight, bat, bones, folds, grads, differentiable: false);
            });
        }

        // dD_k = fold_kᵀ·dY; dX = dY·W' + Σ_k (dY·D_kᵀ) broadcast over the in/r_k blocks (thin), or dY·(W' + Σ_k ΔW_k)
        // (dense), in one buffer; Bat's dD_I = Σ_J W_IJᵀ·G_IJ + Σ_J G_IJ with G = dYᵀ·x. With create_graph
        // (differentiable) the same formulas run out of place with libtorch ops on the saved tensors, which lead back to
        // dY, the blocks and (through the folds and x) the input, so second derivatives are right.
        private static void Backward(Args args, Tensor gradOutput, Tensor? x, Tensor? weight, Tensor? bat, Tensor[] bones,
            Tensor?[] folds, Tensor?[] grads, bool differentiable)
        {
            long n = args.Rows, d = args.In, o = args.Out;
            int count = bones.Length;
            var dY = gradOutput.reshape(n, o);
            if (!dY.is_contiguous()) dY = dY.contiguous();

            var products = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
            for (int k = 0; k < count; k++)
            {
                if (!args.NeedBone[k] || folds[k] is not { } f) continue;
                if (differentiable) grads[FirstBoneIndex + 2 * k] = f.t().mm(dY);
                else if (products.TryGetValue(f, out var same)) grads[FirstBoneIndex + 2 * k] = same.clone(); // its own storage
                else grads[FirstBoneIndex + 2 * k] = products[f] = TransposedProduct(f, dY, args);
            }

            if (args.NeedInput && weight is not null)
            {
                Tensor dX;
                if (differentiable)
                {
                    dX = dY.mm(ComposedWeight(weight, bat, args.Dense ? bones : Array.Empty<Tensor>()));
                    if (!args.Dense)
                        for (int k = 0; k < count; k++)
                        {
                            long r = bones[k].shape[0];
                            var g = dY.mm(bones[k].t());
                            dX = dX.add(g.unsqueeze(1).expand(n, d / r, r).reshape(n, d));
                        }
                }
                else if (args.Dense || count == 0)
                {
                    // Into a fresh dX, through the adapted weight in the scratch buffer (β = 0: nothing read from dX).
                    dX = torch.empty(n, d, dtype: ScalarType.Float32);
                    dX.addmm_(dY, AdaptedWeight(weight, bat, bones), beta: 0, alpha: 1);
                }
                else
                {
                    // The broadcast first (a write pass), then the GEMM accumulates into it (β = 1): dX is one buffer.
                    dX = torch.empty(n, d, dtype: ScalarType.Float32);
                    var byRank = GroupByRank(args.BoneRanks);
                    bool first = true;
                    foreach (var (r, members) in byRank)
                    {
                        var g = dY.mm(bones[members[0]].t());
                        for (int m = 1; m < members.Count; m++) g.addmm_(dY, bones[members[m]].t());
                        unsafe
                        {
                            if (n > 0 && first) BoneKernels.Broadcast(TensorData.Floats(g), n, (int)d, (int)r, TensorData.Floats(dX));
                            else if (n > 0) BoneKernels.AddPeriodic(TensorData.Floats(dX), TensorData.Floats(g), n, (int)d, (int)r, TensorData.Floats(dX));
                        }
                        first = false;
                    }
                    dX.addmm_(dY, AdaptedWeight(weight, bat, Array.Empty<Tensor>()), beta: 1, alpha: 1);
                }
                grads[InputIndex] = dX.view(args.InputShape);
            }

            if (bat is not null && args.NeedBat && x is not null && weight is not null)
            {
                long r = bat.shape[^1], outBlocks = o / r, inBlocks = d / r;
                var x2 = x.reshape(n, d);
                var tiles = weight.view(outBlocks, r * inBlocks, r);                 // block I's rows as [(a, J), c]
                if (differentiable)
                {
                    var g = dY.t().mm(x2);                                           // G [out, in]
                    var sum = g.view(outBlocks, r, inBlocks, r).sum(2);              // Σ_J G_IJ
                    grads[BatIndex] = tiles.transpose(1, 2).bmm(g.view(outBlocks, r * inBlocks, r)).add(sum);
                }
                else
                {
                    grads[BatIndex] = BatGradient(dY, x2, tiles, r, outBlocks, inBlocks);
                }
            }
        }

        /// <summary>
        /// Bytes of G that one slab of output blocks may take. 4 MiB: G whole at d = 1024 (one GEMM, as before: slabs of
        /// 512 KiB, eight GEMMs with their own libtorch hand-offs, measured slower there under load, 1.82 against 1.65
        /// of the frozen base), slabs of a few blocks at d = 4096, where G would be 64 MiB written and read twice.
        /// </summary>
        internal static long BatSlabBytes { get; set; } = 4L << 20;

        /// <summary>
        /// Bat's dD_I = Σ_J W_IJᵀ·G_IJ + Σ_J G_IJ with G = dYᵀ·x, a slab of output blocks at a time: G's rows of the slab
        /// (dY's columns of those blocks against x, one GEMM) go to a small buffer that stays in cache while the slab's
        /// tiles of W are multiplied into it (one batched product whose output is [blocks, r, r]) and its column blocks
        /// are folded; G [out, in] is never formed, so it is never written to memory and read back twice.
        /// </summary>
        private static unsafe Tensor BatGradient(Tensor dY, Tensor x2, Tensor tiles, long r, long outBlocks, long inBlocks)
        {
            long d = x2.shape[1];
            var dD = torch.empty(outBlocks, r, r, dtype: ScalarType.Float32);
            long per = Math.Clamp(BatSlabBytes / (sizeof(float) * r * d), 1, outBlocks); // output blocks per slab
            // This thread's general scratch buffer, not a fresh allocation each step; dX, the last reader of the adapted
            // weight there, is done.
            using var slab = ThreadScratch.Floats(per * r, d);
            using var folded = torch.empty(per * r, r, dtype: ScalarType.Float32);
            using var dYt = dY.t();
            for (long i0 = 0; i0 < outBlocks; i0 += per)
            {
                long blocks = Math.Min(per, outBlocks - i0);
                using var g = slab.narrow(0, 0, blocks * r);
                using var dYs = dYt.narrow(0, i0 * r, blocks * r);
                g.addmm_(dYs, x2, beta: 0, alpha: 1);                                  // G's rows of these blocks
                using var into = dD.narrow(0, i0, blocks);
                using var w = tiles.narrow(0, i0, blocks).transpose(1, 2);
                using var gv = g.view(blocks, r * inBlocks, r);
                using var f = folded.narrow(0, 0, blocks * r);
                if (x2.shape[0] > 0) BoneKernels.Fold(TensorData.Floats(g), blocks * r, (int)d, (int)r, TensorData.Floats(f));
                else f.zero_();
                using var fv = f.view(blocks, r, r);
                using var product = w.bmm(gv);                                         // Σ_J W_IJᵀ·G_IJ
                into.copy_(product.add_(fv));                                          // + Σ_J G_IJ
            }
            return dD;
        }

        private static List<(long Rank, List<int> Members)> GroupByRank(long[] ranks)
        {
            var groups = new List<(long, List<int>)>();
            for (int k = 0; k < ranks.Length; k++)
            {
                int at = groups.FindIndex(g => g.Item1 == ranks[k]);
                if (at < 0) groups.Add((ranks[k], new List<int> { k }));
                else groups[at].Item2.Add(k);
            }
            return groups;
        }

        // Dense: y = b + x·W'ᵀ with W' = W (after Bat) + Σ_k ΔW_k formed in the scratch buffer. Thin: y = b + Σ_k fold_k·D_k
        // (addmm with the bias as its β term), then libtorch's GEMM adds x·W'ᵀ in place (β = 1). Either way one output
        // buffer, and no ΔW of a Bone block on the thin path.
        private static Tensor Compute(Tensor x2, Tensor weight, Tensor? bias, Tensor? bat, IReadOnlyList<Tensor> bones,
            Dictionary<long, Tensor> folds, Args args)
        {
            long n = args.Rows, o = args.Out;
            var outShape = args.InputShape.ToArray();
            outShape[^1] = o;
            using var scope = NewDisposeScope();
            Tensor y;
            if (bones.Count == 0 || args.Dense)
            {
                var adapted = AdaptedWeight(weight, bat, bones);
                y = bias is null ? x2.mm(adapted.t()) : torch.addmm(bias, x2, adapted.t(), 1, 1);
            }
            else
            {
                var byRank = GroupByRank(args.BoneRanks);
                var fold = folds[byRank[0].Rank];
                var first = bones[byRank[0].Members[0]];
                y = bias is null ? fold.mm(first) : torch.addmm(bias, fold, first, 1, 1);
                foreach (var (r, members) in byRank)
                    foreach (int k in members)
                        if (!ReferenceEquals(bones[k], first)) y.addmm_(folds[r], bones[k]);
                y.addmm_(x2, AdaptedWeight(weight, bat, Array.Empty<Tensor>()).t(), beta: 1, alpha: 1);
            }
            return scope.MoveToOuter(y.view(outShape));
        }

        /// <summary>
        /// W after the Bat block (if any) plus ΔW of each of <paramref name="bones"/>, in this thread's scratch buffer
        /// (valid until the next use of the buffer), or W itself when there is nothing to add. One pass over W.
        /// </summary>
        private static unsafe Tensor AdaptedWeight(Tensor weight, Tensor? bat, IReadOnlyList<Tensor> bones)
        {
            if (bat is null && bones.Count == 0) return weight;
            long o = weight.shape[0], d = weight.shape[1];
            var w = ThreadScratch.Floats(o, d);
            if (o == 0 || d == 0) return w;
            float* target = TensorData.Floats(w), source = TensorData.Floats(weight);
            if (bat is not null)
            {
                long r = bat.shape[^1];
                BoneKernels.BatWeight(source, TensorData.Floats(bat), (int)o, (int)d, (int)r, target, KernelThreads(o * d * r));
                source = target;
            }
            foreach (var block in bones)
            {
                // D's column for each output row, held as a pattern while the row streams past.
                using var dT = block.t().contiguous();
                BoneKernels.AddPeriodic(source, TensorData.Floats(dT), o, (int)d, (int)block.shape[0], target);
                source = target;
            }
            return w;
        }

        /// <summary>The adapted weight with libtorch ops, differentiable in the blocks (create_graph, and the composed path).</summary>
        private static Tensor ComposedWeight(Tensor weight, Tensor? bat, IReadOnlyList<Tensor> bones)
        {
            long o = weight.shape[0], d = weight.shape[1];
            var w = bat is null ? weight : BatWeight(weight, bat);
            foreach (var block in bones)
            {
                long r = block.shape[0];
                w = w.reshape(o, d / r, r).add(block.t().unsqueeze(1)).reshape(o, d); // [out, 1, r] against [out, in/r, r]
            }
            return w;
        }

        /// <summary>fold_r(x) = Σ_J x[:, J·r:(J+1)·r] for x [n, in], as [n, r]: one streaming pass over x.</summary>
        private static unsafe Tensor Fold(Tensor x2, long r)
        {
            long n = x2.shape[0], d = x2.shape[1];
            var fold = torch.empty(n, r, dtype: ScalarType.Float32);
            if (n > 0) BoneKernels.Fold(TensorData.Floats(x2), n, (int)d, (int)r, TensorData.Floats(fold));
            return fold;
        }

        /// <summary>dD = foldᵀ·dY, [r, out], by libtorch's GEMM (about three times as fast here as a register-blocked loop).</summary>
        private static Tensor TransposedProduct(Tensor fold, Tensor dY, Args args)
        {
            var dD = torch.empty(fold.shape[1], args.Out, dtype: ScalarType.Float32);
            using var foldT = fold.t();
            return dD.addmm_(foldT, dY, beta: 0, alpha: 1);
        }

        /// <summary>Workers for Bat's adapted weight, when a test or benchmark fixes them.</summary>
        internal static int? KernelThreadsOverride { get; set; }

        /// <summary>Multiply-adds of Bat's adapted weight from which sharing its rows between workers pays.</summary>
        internal const long ParallelWork = 1L << 29;

        /// <summary>The same once libgomp's idle workers sleep soon (<see cref="Native.OpenMpTuning"/>).</summary>
        internal const long ShortSpinParallelWork = 1L << 25;

        // libtorch's intra-op thread count for a large pass, the calling thread alone for a smaller one: a worker
        // preempted mid-tile (or sharing its core with libgomp's spinning thread right after a GEMM) costs more than the
        // second core saves on a small pass. The measurements behind both thresholds: benchmarks/README.md.
        private static int KernelThreads(long work) =>
            KernelThreadsOverride ?? KernelWorkers.Count(work, ParallelWork, ShortSpinParallelWork);

        /// <summary>
        /// fold_r(x) as an autograd node of its own: forward is <see cref="BoneKernels.Fold"/>, backward broadcasts the
        /// incoming gradient over the blocks. It is there for create_graph only: <see cref="BoneFunction"/> computes the
        /// whole dX itself and gives the fold no gradient, so in a first-order backward this node receives none and
        /// returns at once; a second-order one reaches x through it (dD = foldᵀ·dY depends on x).
        /// </summary>
        internal sealed class FoldFunction : torch.autograd.SingleTensorFunction<FoldFunction>
        {
            /// <inheritdoc />
            public override string Name => nameof(FoldFunction);

            /// <inheritdoc />
            public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
            {
                var x2 = (Tensor)vars[0];
                long r = (long)vars[1];
                ctx.save_data("shape", (x2.shape[0], x2.shape[1], r));
                var fold = Fold(x2, r);
                FusedAutograd.Forwarded(ctx, fold); // apply wraps its own handle on the output
                return fold;
            }

            /// <summary>Folds <paramref name="x2"/> [n, in] into blocks of <paramref name="r"/> as a differentiable node.</summary>
            internal static Tensor Graph(Tensor x2, long r) => FusedAutograd.Run(() => apply(x2, r)).Output;

            /// <inheritdoc />
            public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad_output) =>
                FusedAutograd.Backward(grad_output, 2, grads =>
                {
                    var (n, d, r) = ((long, long, long))ctx.get_data("shape");
                    // Differentiable ops (under create_graph this is itself differentiated), the gradient of a sum.
                    grads[0] = grad_output.reshape(n, 1, r).expand(n, d / r, r).reshape(n, d);
                });
        }

        /// <summary>
        /// W' = W + W_IJ·D_I + D_I per tile, for W [out, in] and D [out/r, r, r]. Output block I's rows of W, viewed as
        /// [(a, J), c], times D_I give every tile's W_IJ·D_I in W's own layout, so no permute copies W.
        /// </summary>
        private static Tensor BatWeight(Tensor weight, Tensor bat)
        {
            long r = bat.shape[^1], outF = weight.shape[0], inF = weight.shape[1];
            long outBlocks = outF / r, inBlocks = inF / r;
            var tiles = weight.reshape(outBlocks, r * inBlocks, r);
            // Not baddbmm: TorchSharp 0.107 hands its operands to libtorch in the wrong order (it computes
            // batch2 + input·batch1).
            var adapted = tiles.bmm(bat).add(tiles);                                            // W_IJ·D_I + W_IJ
            var sum = adapted.view(outBlocks, r, inBlocks, r).add(bat.view(outBlocks, r, 1, r)); // + D_I
            return sum.view(outF, inF);
        }

        // The reference semantics with TorchSharp ops: for other dtypes, layouts and devices, and an unfrozen base.
        private static Tensor Composed(Tensor x, Tensor weight, Tensor? bias, Tensor? bat, IReadOnlyList<Tensor> bones)
        {
            using var scope = NewDisposeScope();
            var y = nn.functional.linear(x, bat is null ? weight : BatWeight(weight, bat.to(weight.dtype)), bias);
            long d = x.shape[^1];
            foreach (var block in bones)
            {
                long r = block.shape[0];
                var folded = x.reshape(x.shape[..^1].Append(d / r).Append(r).ToArray()).sum(-2);
                y = y.add(folded.matmul(block));
            }
            return scope.MoveToOuter(y);
        }

        /// <summary>
        /// Whether <see cref="Linear"/> runs the fused function for these tensors rather than composing TorchSharp ops
        /// (<see cref="WhyNotFused"/> gives no reason against it).
        /// </summary>
        internal static bool CanFuse(Tensor x, Tensor weight, Tensor? bias, Tensor? bat, IReadOnlyList<Tensor> bones) =>
            WhyNotFused(x, weight, bias, bat, bones) is null;

        /// <summary>
        /// Why the fused function cannot run for these tensors, or null where it runs: dense float32 CPU tensors, a frozen
        /// base, and 256-bit vectors in hardware, as <see cref="LoRAFunction.WhyNotFused"/> requires. The reason goes to
        /// <see cref="FusedKernels.Fallback"/>.
        /// </summary>
        internal static string? WhyNotFused(Tensor x, Tensor weight, Tensor? bias, Tensor? bat, IReadOnlyList<Tensor> bones)
        {
            var named = new (string, Tensor?, bool)[4 + bones.Count];
            named[0] = ("input", x, false);
            named[1] = ("base weight", weight, true);
            named[2] = ("base bias", bias, true);
            named[3] = ("Bat block", bat, false);
            for (int i = 0; i < bones.Count; i++) named[4 + i] = ($"Bone block {i}", bones[i], false);
            return FusedKernels.WhyNot(named);
        }

        private static (long Rows, long In, long Out) Validate(Tensor x, Tensor weight, Tensor? bias, Tensor? bat, IReadOnlyList<Tensor> bones)
        {
            if (x.dim() < 1) throw new ArgumentException("BoneFunction needs an input of shape [..., in].");
            if (weight.dim() != 2) throw new ArgumentException($"The base weight must be [out, in], got [{string.Join(", ", weight.shape)}].");
            long o = weight.shape[0], d = weight.shape[1];
            if (x.shape[^1] != d) throw new ArgumentException($"The input [{string.Join(", ", x.shape)}] does not fit the base weight [{o}, {d}].");
            if (bias is not null && (bias.dim() != 1 || bias.shape[0] != o))
                throw new ArgumentException($"The base bias [{string.Join(", ", bias.shape)}] does not fit {o} outputs.");
            if (bat is not null)
            {
                long r = bat.dim() == 3 ? bat.shape[2] : 0;
                if (r < 1 || bat.shape[1] != r || o % r != 0 || d % r != 0 || bat.shape[0] != o / r)
                    throw new ArgumentException($"The Bat block [{string.Join(", ", bat.shape)}] does not fit the weight [{o}, {d}]: it must be [out/r, r, r] with r dividing in and out.");
            }
            foreach (var block in bones)
            {
                if (block.dim() != 2 || block.shape[0] < 1 || block.shape[1] != o || d % block.shape[0] != 0)
                    throw new ArgumentException($"The Bone block [{string.Join(", ", block.shape)}] does not fit the weight [{o}, {d}]: it must be [r, out] with r dividing in.");
            }
            return (x.numel() / Math.Max(1, d), d, o);
        }

        internal sealed record Args(long Rows, long In, long Out, long[] InputShape, bool NeedInput, bool NeedBat,
            bool[] NeedBone, long[] BoneRanks, bool Dense);

        /// <summary>Tests and benchmarks set this (on their thread) to force the dense (true) or thin (false) Bone arithmetic.</summary>
        internal static bool? DenseOverride
        {
            get => _denseOverride;
            set => _denseOverride = value;
        }

        [ThreadStatic] private static bool? _denseOverride;

        /// <summary>Whether a call with this input and these Bone blocks would take the dense arithmetic.</summary>
        internal static bool ChoosesDense(Tensor input, IReadOnlyList<Tensor> boneBlocks)
        {
            long d = input.shape[^1];
            return UseDense(input.numel() / Math.Max(1, d), d, boneBlocks.Select(b => b.shape[0]).ToArray());
        }

        // Whether forming W' = W + ΔW (a pass over W, twice per step) is cheaper than the thin products it replaces
        // (fold·D forward, dY·Dᵀ and its broadcast backward: about 2·n·r·out multiply-adds per Bone block).
        private static bool UseDense(long rows, long inF, long[] ranks) =>
            DenseOverride ?? (ranks.Length > 0 && rows * ranks.Sum() >= DenseThreshold * inF);

        /// <summary>n·Σr / in from which the dense arithmetic is chosen (measured; see benchmarks/README.md).</summary>
        internal const long DenseThreshold = 32;
    }
}
