using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// The whole LoRA layer as one autograd function: y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ, with W and b frozen.
    /// </summary>
    /// <remarks>
    /// <para>Forward: u = (x ⊙ keep)·Aᵀ ([n, r]), then y = b + (s / (1 − p))·u·Bᵀ and y += x·Wᵀ, all by libtorch's GEMM
    /// into one output buffer (<c>addmm_</c> in place). It saves x (the input itself, no copy), u and the dropout mask
    /// as bits, 1/32 of x: never a dropped copy of x, nor a float mask.</para>
    /// <para>Dropout is a <see cref="DropoutMask"/> (Philox4x32-10), drawn once per call as bits in the same pass that
    /// writes x ⊙ keep into a per-thread scratch buffer for the GEMM (<see cref="DropoutRows"/>); backward rebuilds
    /// x ⊙ keep from the bits in the pass that adds dX's masked low-rank part.</para>
    /// <para>Backward: g = (s / (1 − p))·dY·B, dBᵀ = (s / (1 − p))·uᵀ·dY, dX = dY·W + (g·A) ⊙ keep in one buffer (with
    /// dropout the GEMM writes dY·W, then one pass adds the masked g·A, eight rows at a time in registers, and writes
    /// x ⊙ keep), and dA = gᵀ·(x ⊙ keep): there is never a gradient for W or b. The products are GEMMs: measured here,
    /// libtorch's beat hand-written loops at every size tried, from
    /// one row to thousands and r from 8 to 64 (benchmarks/README.md); hand-written loops remain for a mixed batch's
    /// rows, which they read in place (<see cref="LoRAKernels"/>). When no gradient is needed (inference,
    /// <c>no_grad</c>) the same arithmetic runs without an autograd node, so results are identical. Inputs other than
    /// dense float32 CPU tensors and an unfrozen base take the composed TorchSharp ops, with the same mask on CPU.</para>
    /// <para>With <c>create_graph</c>, backward recomputes the layer with differentiable ops and the same mask, so
    /// second derivatives are right (this needs x saved, i.e. A trainable). An error inside a custom backward cannot
    /// travel back through libtorch's engine in TorchSharp 0.107 (it ends the process), so the usual mistake of running
    /// backward twice over a freed graph, an exception with built-in layers, aborts with libtorch's message here.</para>
    /// </remarks>
    public sealed class LoRAFunction : torch.autograd.SingleTensorFunction<LoRAFunction>
    {
        private const int InputIndex = 0, PreviousIndex = 1, WeightIndex = 2, BiasIndex = 3, AIndex = 4, BIndex = 5, ArgCount = 7;

        [ThreadStatic] private static SaveReport? _lastSave;

        /// <inheritdoc />
        public override string Name => nameof(LoRAFunction);

        /// <summary>
        /// y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ for a frozen Linear (<paramref name="weight"/> [out, in],
        /// <paramref name="bias"/> [out] or null) and one adapter (<paramref name="loraA"/> [r, in],
        /// <paramref name="loraB"/> [out, r]). <paramref name="input"/> has shape [..., in].
        /// </summary>
        /// <param name="input">The layer input.</param>
        /// <param name="weight">The frozen base weight.</param>
        /// <param name="bias">The frozen base bias, or null.</param>
        /// <param name="loraA">LoRA's A factor.</param>
        /// <param name="loraB">LoRA's B factor.</param>
        /// <param name="scaling">s: α / r (or α / √r).</param>
        /// <param name="dropout">Dropout probability on the adapter input, in [0, 1); 0 in evaluation.</param>
        public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias, Tensor loraA, Tensor loraB, double scaling, double dropout) =>
            Apply(input, null, weight, bias, loraA, loraB, scaling, dropout, dropout > 0 ? NextSeed() : 0);

        /// <summary>
        /// <paramref name="previous"/> + s·(drop(x)·Aᵀ)·Bᵀ: a further adapter on a layer whose base output (with earlier
        /// adapters) is <paramref name="previous"/> ([..., out]).
        /// </summary>
        /// <param name="previous">The layer's output so far.</param>
        /// <param name="input">The layer input.</param>
        /// <param name="loraA">LoRA's A factor.</param>
        /// <param name="loraB">LoRA's B factor.</param>
        /// <param name="scaling">s: α / r (or α / √r).</param>
        /// <param name="dropout">Dropout probability on the adapter input, in [0, 1); 0 in evaluation.</param>
        public static Tensor AddTo(Tensor previous, Tensor input, Tensor loraA, Tensor loraB, double scaling, double dropout) =>
            Apply(input, previous, null, null, loraA, loraB, scaling, dropout, dropout > 0 ? NextSeed() : 0);

        /// <summary>
        /// Inference for a mixed batch: y = x·Wᵀ + b with, for each group, s·(x[rows]·Aᵀ)·Bᵀ added to its rows, rows
        /// being indices into the first dimension of <paramref name="input"/> ([n, ..., in]). The thin products go
        /// first, by <see cref="LoRAKernels"/>, straight into the output buffer (each group's rows read where they lie,
        /// written where they belong: no gathered copy of x, no temporary, no scatter), rows of no group get the bias,
        /// and libtorch's GEMM then adds x·Wᵀ in place. Returns null where the raw loops cannot run (dtype,
        /// layout, device, no 256-bit vectors, an unfrozen base) or a gradient is wanted; the caller composes then.
        /// </summary>
        internal static unsafe Tensor? TryLinearRowGroups(Tensor input, Tensor weight, Tensor? bias, IReadOnlyList<(long[] Rows, Tensor A, Tensor B, double Scaling)> groups)
        {
            if (FusedKernels.WhyNot(("input", input, false), ("base weight", weight, true), ("base bias", bias, true)) is not null) return null;
            bool grad = is_grad_enabled() && input.requires_grad;
            foreach (var g in groups)
            {
                if (!TensorData.IsDenseCpuFloat(g.A) || !TensorData.IsDenseCpuFloat(g.B)) return null;
                grad |= is_grad_enabled() && (g.A.requires_grad || g.B.requires_grad);
            }
            if (grad || input.dim() < 2 || weight.dim() != 2) return null;
            long n = input.shape[0], d = input.shape[^1], o = weight.shape[0];
            if (weight.shape[1] != d || (bias is not null && bias.shape[0] != o)) return null;
            foreach (var g in groups)
                if (g.A.dim() != 2 || g.B.dim() != 2 || g.A.shape[1] != d || g.B.shape[0] != o || g.B.shape[1] != g.A.shape[0]) return null;
            long flat = input.numel() / Math.Max(1, d), inner = n == 0 ? 1 : flat / n; // rows of the flattened input per batch row
            var outShape = input.shape.ToArray();
            outShape[^1] = o;
            var y = torch.empty(outShape, dtype: ScalarType.Float32);
            if (flat == 0 || d == 0) return flat == 0 ? y : y.copy_(bias is null ? torch.zeros(outShape) : bias.expand(outShape));

            var work = new List<LoRARowGroup>(groups.Count);
            var pins = new List<System.Runtime.InteropServices.GCHandle>(groups.Count);
            var covered = new bool[n];
            long total = 0;
            try
            {
                float* yp = TensorData.Floats(y), bp = bias is null ? null : TensorData.Floats(bias);
                // Every group's packed Aᵀ and Bᵀ in this thread's operand buffer, one after the other.
                long panelFloats = 0;
                foreach (var (rows, a, _, _) in groups)
                    if (rows.Length > 0)
                        panelFloats += LoRAKernels.RankPanelFloats((int)a.shape[0], (int)d) + LoRAKernels.TransposedFloats((int)o, (int)a.shape[0]);
                float* panels = ThreadScratch.Pointer(ThreadScratch.Slot.PackedOperands, panelFloats);
                foreach (var (rows, a, b, scaling) in groups)
                {
                    if (rows.Length == 0) continue;
                    foreach (long row in rows) covered[row] = true;
                    var map = inner == 1 ? rows : Expand(rows, inner);
                    var pin = System.Runtime.InteropServices.GCHandle.Alloc(map, System.Runtime.InteropServices.GCHandleType.Pinned);
                    pins.Add(pin);
                    int rank = checked((int)a.shape[0]);
                    float* bRows = TensorData.Floats(b), atPanels = panels, btPanels = atPanels + LoRAKernels.RankPanelFloats(rank, (int)d);
                    panels = btPanels + LoRAKernels.TransposedFloats((int)o, rank);
                    LoRAKernels.PackRankPanels(TensorData.Floats(a), rank, (int)d, atPanels);
                    LoRAKernels.PackTransposed(bRows, (int)o, rank, btPanels);
                    work.Add(new LoRARowGroup
                    {
                        X = TensorData.Floats(input), B = bRows, BtPanels = btPanels, AtPanels = atPanels,
                        Rows = (long*)pin.AddrOfPinnedObject(), Count = map.Length, In = checked((int)d), Out = checked((int)o), Rank = rank,
                        Scale = (float)scaling,
                    });
                    total += map.Length * (d + o) * rank;
                }
                // Rows no group covers start from the bias (or zero).
                for (long row = 0; row < n; row++)
                {
                    if (covered[row]) continue;
                    for (long t = 0; t < inner; t++)
                    {
                        float* dst = yp + (row * inner + t) * o;
                        if (bp is null) new Span<float>(dst, (int)o).Clear();
                        else new ReadOnlySpan<float>(bp, (int)o).CopyTo(new Span<float>(dst, (int)o));
                    }
                }
                int threads = KernelThreadsOverride ?? KernelWorkers.Count(total, ParallelWork, ShortSpinParallelWork);
                // Work items: (group, first row, end row) in chunks of 64 rows, shared by the workers.
                var items = new List<(int Group, long Row0, long Row1)>();
                for (int k = 0; k < work.Count; k++)
                    for (long r0 = 0; r0 < work[k].Count; r0 += 64) items.Add((k, r0, Math.Min(work[k].Count, r0 + 64)));
                KernelWorkers.Spans(items.Count, 1, threads, (i0, i1) =>
                {
                    for (long i = i0; i < i1; i++)
                    {
                        var (k, r0, r1) = items[(int)i];
                        LoRAKernels.Forward(work[k], bp, yp, r0, r1);
                    }
                });
                using (var y2 = y.view(flat, o))
                using (var x2 = input.view(flat, d))
                using (var wt = weight.t())
                    y2.addmm_(x2, wt, beta: 1, alpha: 1);
                return y;
            }
            catch
            {
                y.Dispose();
                throw;
            }
            finally
            {
                foreach (var pin in pins) pin.Free();
            }
        }

        private static long[] Expand(long[] rows, long inner)
        {
            var map = new long[rows.Length * inner];
            for (int i = 0; i < rows.Length; i++)
                for (long t = 0; t < inner; t++) map[i * inner + t] = rows[i] * inner + t;
            return map;
        }

        /// <summary>A fresh dropout seed, drawn from libtorch's default CPU generator so <c>manual_seed</c> reproduces it.</summary>
        internal static ulong NextSeed()
        {
            using var draw = torch.randint(0, long.MaxValue, new long[] { 1 }, dtype: ScalarType.Int64);
            return (ulong)draw.item<long>();
        }

        /// <summary>The dropout mask of a call with <paramref name="seed"/>, as a float32 CPU tensor of 0 and 1 / (1 − p).</summary>
        internal static unsafe Tensor MaskTensor(ulong seed, double p, long[] shape)
        {
            var mask = torch.empty(shape, dtype: ScalarType.Float32);
            long count = mask.numel();
            if (count > 0) new DropoutMask(seed, p).Fill(TensorData.Floats(mask), count);
            return mask;
        }

        /// <summary>What the last fused forward on this thread saved for backward (for tests and benchmarks).</summary>
        internal static SaveReport? LastSave => _lastSave;

        /// <summary>The fused forward with an explicit dropout seed (tests compare it with a composition using the same mask).</summary>
        internal static Tensor Apply(Tensor input, Tensor? previous, Tensor? weight, Tensor? bias, Tensor loraA, Tensor loraB,
            double scaling, double dropout, ulong seed)
        {
            FusedAutograd.ReleaseReturnedGradients();
            var shape = Validate(input, previous, weight, bias, loraA, loraB, dropout);
            var mask = new DropoutMask(seed, dropout);
            if (WhyNotFused(input, previous, weight, bias, loraA, loraB) is { } why)
            {
                FusedKernels.Record(nameof(LoRAFunction), why);
                return Composed(input, previous, weight, bias, loraA, loraB, scaling, mask);
            }

            bool needsGraph = is_grad_enabled() &&
                (input.requires_grad || loraA.requires_grad || loraB.requires_grad || previous?.requires_grad == true);
            var args = new Args((float)scaling, mask, shape.Rows, shape.In, shape.Out, input.shape,
                NeedInput: input.requires_grad, NeedPrevious: previous?.requires_grad == true,
                NeedA: loraA.requires_grad, NeedB: loraB.requires_grad);
            if (!needsGraph)
            {
                using var scope = NewDisposeScope();
                var (y, _, _) = Compute(input, previous, weight, bias, loraA, loraB, args);
                return scope.MoveToOuter(y);
            }

            var (output, released) = FusedAutograd.Run(() => apply(input, previous, weight, bias, loraA, loraB, args));
            if (_lastSave is { } report) _lastSave = report with { OutputCacheReleased = released };
            return output;
        }

        /// <inheritdoc />
        public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[InputIndex];
            var previous = vars[PreviousIndex] as Tensor;
            var weight = vars[WeightIndex] as Tensor;
            var bias = vars[BiasIndex] as Tensor;
            var a = (Tensor)vars[AIndex];
            var b = (Tensor)vars[BIndex];
            var args = (Args)vars[ArgCount - 1];

            var (y, u, bits) = Compute(x, previous, weight, bias, a, b, args);

            // Only what backward reads: x for dA (the frozen layer keeps it anyway), W and A for dX, B for dY·B, u for dB,
            // and the dropout mask as bits (1/32 of x) for dA and dX.
            var saveX = args.NeedA ? x : null;
            var saveW = args.NeedInput ? weight : null;
            var saveU = args.NeedB ? u : null;
            var saveBits = args.NeedA || args.NeedInput ? bits : null;
            ctx.save_for_backward(new List<Tensor> { saveX!, saveW!, a, b, saveU!, saveBits! });
            ctx.save_data("args", args);
            FusedAutograd.Forwarded(ctx, y, u, bits); // apply wraps its own handle on y; the saved variables hold their own
            _lastSave = new SaveReport(
                InputBytes: FusedAutograd.Bytes(saveX),
                ParameterBytes: FusedAutograd.Bytes(saveW) + FusedAutograd.Bytes(a) + FusedAutograd.Bytes(b),
                ActivationBytes: FusedAutograd.Bytes(saveU) + FusedAutograd.Bytes(saveBits),
                OutputCacheReleased: false);
            return y;
        }

        /// <inheritdoc />
        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad_output) =>
            FusedAutograd.Backward(grad_output, ArgCount, grads =>
            {
                // Nothing here throws on purpose: every case is handled.
                var args = (Args)ctx.get_data("args");
                var saved = ctx.get_saved_variables();
                Tensor? x = saved[0], weight = saved[1], a = saved[2], b = saved[3], u = saved[4], bits = saved[5];
                if (is_grad_enabled() && x is not null)
                    BackwardWithGraph(args, grad_output, x, weight, a!, b!, grads);
                else
                    using (no_grad())
                        (grads[InputIndex], grads[AIndex], grads[BIndex]) = BackwardFused(args, grad_output, x, weight, a!, b!, u, bits);
                if (args.NeedPrevious) grads[PreviousIndex] = grad_output;
            });

        /// <summary>
        /// dX (low-rank part plus dY·W), dA and dB of the layer for upstream gradient <paramref name="gradOutput"/>, each
        /// null where <paramref name="args"/> says it is not needed: g = c·dY·B, dBᵀ = c·uᵀ·dY, dX = (g·A) ⊙ keep + dY·W
        /// and dA = gᵀ·(x ⊙ keep), by libtorch's GEMMs and, with dropout, one pass that adds the masked g·A to dX and
        /// rebuilds the masked input from the saved bits <paramref name="bits"/>. Never throws for tensors forward saved.
        /// </summary>
        internal static unsafe (Tensor? DX, Tensor? DA, Tensor? DB) BackwardFused(Args args, Tensor gradOutput, Tensor? x, Tensor? weight, Tensor a, Tensor b,
            Tensor? u, Tensor? bits = null)
        {
            long n = args.Rows, d = args.In, o = args.Out, r = a.shape[0];
            var dY = gradOutput.reshape(n, o);
            if (!dY.is_contiguous()) dY = dY.contiguous();
            float c = args.Scaling * (args.Mask.DropsAny ? args.Mask.KeepScale : 1f);
            var dA = args.NeedA ? torch.empty(r, d, dtype: ScalarType.Float32) : null;
            var dBt = args.NeedB ? torch.empty(r, o, dtype: ScalarType.Float32) : null;
            var dX = args.NeedInput ? torch.empty(args.InputShape, dtype: ScalarType.Float32) : null;
            if (n == 0)
            {
                dA?.zero_();
                dBt?.zero_();
                return (dX, dA, dBt?.t());
            }
            if (dBt is not null)
            {
                using var ut = u!.t();
                dBt.addmm_(ut, dY, beta: 0, alpha: c);
            }
            if (dA is null && dX is null) return (null, null, dBt?.t());
            using var g = torch.empty(n, r, dtype: ScalarType.Float32);
            g.addmm_(dY, b, beta: 0, alpha: c);
            using var dX2 = dX?.view(n, d);
            using var x2 = x?.view(n, d);
            Tensor? dropped = null;
            if (bits is null)
            {
                // dX = g·A + dY·W, the frozen layer's own input gradient, in one buffer.
                dX2?.addmm_(g, a, beta: 0, alpha: 1);
                if (dX2 is not null && weight is not null) dX2.addmm_(dY, weight, beta: 1, alpha: 1);
            }
            else
            {
                // dX = dY·W first (written, not read), then one pass adds (g·A) ⊙ keep to it and writes the dropped
                // input for dA: dX is read and written once beyond the GEMM's write, x read once.
                if (dX2 is not null && weight is not null) dX2.addmm_(dY, weight, beta: 0, alpha: 1);
                dropped = dA is null ? null : ThreadScratch.MaskedInput(n, d);
                if (dX2 is not null)
                {
                    float* panels = ThreadScratch.Pointer(ThreadScratch.Slot.PackedOperands, LoRAKernels.TransposedFloats((int)d, (int)r));
                    LoRAKernels.PackColumnPanels(TensorData.Floats(a), (int)r, (int)d, panels);
                    DropoutRows.AddMaskedProduct(TensorData.Words(bits), TensorData.Floats(g), (int)r, TensorData.Floats(a), panels,
                        x2 is null ? null : TensorData.Floats(x2), dropped is null ? null : TensorData.Floats(dropped), TensorData.Floats(dX2),
                        n, (int)d, accumulate: weight is not null, PassThreads(n * d));
                }
                else if (dropped is not null)
                    DropoutRows.Apply(TensorData.Words(bits), TensorData.Floats(x2!), TensorData.Floats(dropped), n, (int)d, PassThreads(n * d));
            }
            if (dA is not null)
            {
                using var gt = g.t();
                dA.addmm_(gt, dropped ?? x2!, beta: 0, alpha: 1);
            }
            dropped?.Dispose();
            return (dX, dA, dBt?.t());
        }

        /// <summary>Workers for a mixed batch's thin products and the mask passes, when a test or benchmark fixes them.</summary>
        internal static int? KernelThreadsOverride { get; set; }

        /// <summary>Multiply-adds of one thin pass, n·(in + out)·r, from which sharing rows between workers pays.</summary>
        internal const long ParallelWork = 1L << 27;

        /// <summary>The same once libgomp's idle workers sleep soon (<see cref="Native.OpenMpTuning"/>): a few chunks' worth.</summary>
        internal const long ShortSpinParallelWork = 1L << 22;

        // create_graph: recompute the layer with differentiable ops (the same mask, materialised) and differentiate
        // that, so second derivatives are right. Rare (gradient penalties); speed is not the point here.
        private static void BackwardWithGraph(Args args, Tensor gradOutput, Tensor x, Tensor? weight, Tensor a, Tensor b, Tensor?[] grads)
        {
            var dropped = args.Mask.DropsAny ? x.mul(MaskTensor(args.Mask.Seed, args.Mask.Probability, x.shape)) : x;
            var y = nn.functional.linear(nn.functional.linear(dropped, a), b).mul(args.Scaling);
            if (args.NeedInput && weight is not null) y = y.add(nn.functional.linear(x, weight));
            var inputs = new List<Tensor>();
            if (args.NeedInput) inputs.Add(x);
            if (args.NeedA) inputs.Add(a);
            if (args.NeedB) inputs.Add(b);
            if (inputs.Count == 0) return;
            var result = torch.autograd.grad(new[] { y }, inputs, new[] { gradOutput }, retain_graph: true, create_graph: true, allow_unused: true);
            int k = 0;
            if (args.NeedInput) grads[InputIndex] = result[k++];
            if (args.NeedA) grads[AIndex] = result[k++];
            if (args.NeedB) grads[BIndex] = result[k];
        }

        // y = [previous | b] + c·u·Bᵀ + x·Wᵀ with u = (x ⊙ keep)·Aᵀ, c = s / (1 − p), every product by libtorch's GEMM
        // into one output buffer. With dropout the mask is drawn once, as bits (returned, for backward), together with
        // xd = x ⊙ keep in this thread's scratch buffer, which the GEMM for u reads.
        internal static unsafe (Tensor Y, Tensor U, Tensor? Bits) Compute(Tensor x, Tensor? previous, Tensor? weight, Tensor? bias, Tensor a, Tensor b, Args args)
        {
            long n = args.Rows, d = args.In, o = args.Out, r = a.shape[0];
            var outShape = args.InputShape.ToArray();
            outShape[^1] = o;
            var y = torch.empty(outShape, dtype: ScalarType.Float32);
            // With a bias, u is the first r columns of [u | 1] and the thin GEMM multiplies that by [c·B | b]ᵀ: the bias
            // comes with the product, without a pass of its own over y (u is then a view with row stride r + 1).
            bool withBias = bias is not null && previous is null;
            Tensor u;
            using (var held = torch.empty(n, withBias ? r + 1 : r, dtype: ScalarType.Float32))
                u = withBias ? held.narrow(1, 0, r) : held.alias();
            Tensor? bits = args.Mask.DropsAny ? torch.empty(n, DropoutRows.Words(checked((int)d)), dtype: ScalarType.Int64) : null;
            if (n == 0) return (y, u, bits);
            using var x2 = x.view(n, d);
            using var y2 = y.view(n, o);
            using var at = a.t();
            if (bits is null) u.addmm_(x2, at, beta: 0, alpha: 1);
            else
            {
                using var dropped = ThreadScratch.MaskedInput(n, d);
                DropoutRows.Draw(args.Mask, TensorData.Floats(x2), n, (int)d, TensorData.Words(bits), TensorData.Floats(dropped), PassThreads(n * d));
                u.addmm_(dropped, at, beta: 0, alpha: 1);
            }
            float c = args.Scaling * (args.Mask.DropsAny ? args.Mask.KeepScale : 1f);
            if (withBias)
            {
                using var augmented = u.as_strided(new[] { n, r + 1 }, new[] { r + 1, 1L });
                using (var ones = augmented.narrow(1, r, 1)) ones.fill_(1);
                using var factors = torch.empty(o, r + 1, dtype: ScalarType.Float32);
                using (var scaled = factors.narrow(1, 0, r)) scaled.copy_(b).mul_(c);
                using (var last = factors.narrow(1, r, 1))
                using (var column = bias!.unsqueeze(1))
                    last.copy_(column);
                using var factorsT = factors.t();
                y2.addmm_(augmented, factorsT, beta: 0, alpha: 1);
            }
            else
            {
                using var bt = b.t();
                using var init = previous?.reshape(n, o);
                if (init is not null) y2.copy_(init);
                y2.addmm_(u, bt, beta: init is null ? 0 : 1, alpha: c);
            }
            if (weight is not null)
            {
                using var wt = weight.t();
                y2.addmm_(x2, wt, beta: 1, alpha: 1);
            }
            return (y, u, bits);
        }

        // Both cores for a mask pass over a large input, the calling thread for a small one.
        private static int PassThreads(long elements) => KernelThreadsOverride ?? (elements >= 1L << 18 ? torch.get_num_threads() : 1);

        // The reference semantics with TorchSharp ops: for dtypes, layouts and devices the raw loops do not handle, and
        // for an unfrozen base. On CPU the mask is the same Philox mask; elsewhere libtorch's own dropout.
        private static Tensor Composed(Tensor x, Tensor? previous, Tensor? weight, Tensor? bias, Tensor a, Tensor b, double scaling, DropoutMask mask)
        {
            using var scope = NewDisposeScope();
            Tensor dropped = x;
            if (mask.DropsAny && x.device_type == DeviceType.CPU)
                dropped = x.mul(MaskTensor(mask.Seed, mask.Probability, x.shape).to(x.dtype));
            else if (mask.DropsAny)
                dropped = nn.functional.dropout(x, mask.Probability, training: true);
            var update = nn.functional.linear(nn.functional.linear(dropped, a), b);
            var baseOut = previous ?? nn.functional.linear(x, weight!, bias);
            return scope.MoveToOuter(baseOut.add(update, alpha: scaling));
        }

        /// <summary>
        /// Why the fused function cannot run for these tensors, or null where it runs: it needs dense float32 CPU tensors,
        /// a frozen base, and 256-bit vectors in hardware (elsewhere, an ARM64 machine for one, .NET would emulate the
        /// kernels' vectors and the composed TorchSharp ops are faster). The reason goes to <see cref="FusedKernels.Fallback"/>.
        /// </summary>
        internal static string? WhyNotFused(Tensor x, Tensor? previous, Tensor? weight, Tensor? bias, Tensor a, Tensor b) =>
            FusedKernels.WhyNot(("input", x, false), ("A", a, false), ("B", b, false), ("base weight", weight, true), ("base bias", bias, true))
            ?? (previous is null || (previous.dtype == ScalarType.Float32 && previous.device_type == DeviceType.CPU)
                ? null
                : "the previous output is not float32 on the CPU");

        internal static (long Rows, long In, long Out) Validate(Tensor x, Tensor? previous, Tensor? weight, Tensor? bias, Tensor a, Tensor b, double dropout)
        {
            if (!(dropout >= 0 && dropout < 1))
                throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "LoRA dropout must lie in [0, 1)");
            if ((previous is null) == (weight is null))
                throw new ArgumentException("LoRAFunction needs either the base weight or the previous output, not both.");
            if (x.dim() < 1) throw new ArgumentException("LoRAFunction needs an input of shape [..., in].");
            long d = x.shape[^1];
            if (a.dim() != 2 || b.dim() != 2 || a.shape[1] != d || b.shape[1] != a.shape[0])
                throw new ArgumentException($"LoRA factors do not fit: input [..., {d}], A [{string.Join(", ", a.shape)}], B [{string.Join(", ", b.shape)}].");
            long o = b.shape[0];
            if (weight is not null && (weight.dim() != 2 || weight.shape[0] != o || weight.shape[1] != d))
                throw new ArgumentException($"The base weight [{string.Join(", ", weight.shape)}] does not fit input [..., {d}] and B [{o}, {a.shape[0]}].");
            if (bias is not null && (bias.dim() != 1 || bias.shape[0] != o))
                throw new ArgumentException($"The base bias [{string.Join(", ", bias.shape)}] does not fit {o} outputs.");
            if (previous is not null && !previous.shape.SequenceEqual(x.shape.Take(x.shape.Length - 1).Append(o)))
                throw new ArgumentException($"The previous output [{string.Join(", ", previous.shape)}] does not fit input [{string.Join(", ", x.shape)}] and {o} outputs.");
            return (x.numel() / Math.Max(1, d), d, o);
        }

        internal sealed record Args(float Scaling, DropoutMask Mask, long Rows, long In, long Out, long[] InputShape,
            bool NeedInput, bool NeedPrevious, bool NeedA, bool NeedB);
    }
}
