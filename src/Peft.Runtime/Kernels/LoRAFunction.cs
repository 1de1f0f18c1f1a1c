using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// The whole LoRA layer as one autograd function: y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ, with W and b frozen.
    /// </summary>
    /// <remarks>
    /// <para>Forward computes the thin product u = (x ⊙ keep)·Aᵀ ([n, r]) and y = b + (s / (1 − p))·u·Bᵀ in one pass
    /// over x (<see cref="LoRAKernels"/>), then libtorch's GEMM adds x·Wᵀ into y in place (<c>addmm_</c>, β = 1). It
    /// saves only x (the input itself, no copy), u and a 64-bit dropout seed: never a dropped copy of x nor a mask.</para>
    /// <para>Dropout is a <see cref="DropoutMask"/> (Philox4x32-10), applied in registers while x is read and
    /// regenerated in backward from the seed.</para>
    /// <para>Backward computes g = (s / (1 − p))·dY·B and dB in one pass over dY, dA and the low-rank part of dX,
    /// (g·A) ⊙ keep, in one pass over x, then libtorch adds dY·W into the same dX buffer: dX is computed once through
    /// both paths, and there is never a gradient for W or b. When no gradient is needed (inference, <c>no_grad</c>)
    /// the same arithmetic runs without an autograd node, so results are identical. Inputs the raw loops cannot read
    /// (other dtypes, non-contiguous, non-CPU) and an unfrozen base take the composed TorchSharp ops, with the same
    /// mask on CPU.</para>
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
        /// being indices into the first dimension of <paramref name="input"/> ([n, ..., in]). As in the one-adapter
        /// forward, the thin products go first, straight into the output buffer (each group's rows read where they
        /// lie, written where they belong: no gathered copy of x, no temporary, no scatter), rows of no group get the
        /// bias, and libtorch's GEMM then adds x·Wᵀ in place. Returns null where the raw loops cannot run (dtype,
        /// layout, device, no 256-bit vectors, an unfrozen base) or a gradient is wanted; the caller composes then.
        /// </summary>
        internal static unsafe Tensor? TryLinearRowGroups(Tensor input, Tensor weight, Tensor? bias, IReadOnlyList<(long[] Rows, Tensor A, Tensor B, double Scaling)> groups)
        {
            if (!Vector256.IsHardwareAccelerated || !TensorData.IsDenseCpuFloat(input) || !TensorData.IsDenseCpuFloat(weight) || weight.requires_grad) return null;
            if (bias is not null && (!TensorData.IsDenseCpuFloat(bias) || bias.requires_grad)) return null;
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

            var work = new List<(LoRAProblem Problem, long[] Map, nint Bt)>(groups.Count);
            var covered = new bool[n];
            long total = 0;
            try
            {
                float* yp = TensorData.Floats(y), bp = bias is null ? null : TensorData.Floats(bias);
                foreach (var (rows, a, b, scaling) in groups)
                {
                    if (rows.Length == 0) continue;
                    foreach (long row in rows) covered[row] = true;
                    var map = inner == 1 ? rows : Expand(rows, inner);
                    // Bᵀ transposed here rather than by a libtorch op: under load each op's thread hand-off costs more
                    // than the copy of r·out floats.
                    int rank = checked((int)a.shape[0]);
                    var bt = (float*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)(rank * o), sizeof(float));
                    work.Add((new LoRAProblem
                    {
                        X = TensorData.Floats(input), A = TensorData.Floats(a), Bt = bt,
                        Rows = map.Length, In = checked((int)d), Out = checked((int)o), Rank = rank,
                        Scale = (float)scaling, Mask = new DropoutMask(0, 0),
                    }, map, (nint)bt));
                    float* bp0 = TensorData.Floats(b);
                    for (int k = 0; k < rank; k++)
                    {
                        float* dst = bt + (long)k * o, col = bp0 + k;
                        for (long j = 0; j < o; j++) dst[j] = col[j * rank];
                    }
                    total += map.Length * (d + o) * a.shape[0];
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
                    for (long r0 = 0; r0 < work[k].Problem.Rows; r0 += 64) items.Add((k, r0, Math.Min(work[k].Problem.Rows, r0 + 64)));
                int maxRank = work.Count == 0 ? 0 : work.Max(w => w.Problem.Rank);
                KernelWorkers.Spans(items.Count, 1, threads, (i0, i1) =>
                {
                    float* u = (float*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)(64 * Math.Max(1, maxRank)), sizeof(float));
                    try
                    {
                        for (long i = i0; i < i1; i++)
                        {
                            var (k, r0, r1) = items[(int)i];
                            var (problem, map, _) = work[k];
                            fixed (long* m = map)
                                LoRAKernels.Forward(problem, bp, null, u - r0 * problem.Rank, yp, r0, r1, m); // u: rows r0.. of this item
                        }
                    }
                    finally
                    {
                        System.Runtime.InteropServices.NativeMemory.Free(u);
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
                foreach (var w in work) System.Runtime.InteropServices.NativeMemory.Free((void*)w.Bt);
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
            if (!CanFuse(input, previous, weight, bias, loraA, loraB))
            {
                FusedKernels.Record(nameof(LoRAFunction), WhyNotFused(input, previous, weight, bias, loraA, loraB));
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
                var (y, _) = Compute(input, previous, weight, bias, loraA, loraB, args);
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

            var (y, u) = Compute(x, previous, weight, bias, a, b, args);

            // Only what backward reads: x for dA (the frozen layer keeps it anyway), W and A for dX, B for dY·B, u for dB.
            var saveX = args.NeedA ? x : null;
            var saveW = args.NeedInput ? weight : null;
            var saveU = args.NeedB ? u : null;
            ctx.save_for_backward(new List<Tensor> { saveX!, saveW!, a, b, saveU! });
            ctx.save_data("args", args);
            FusedAutograd.Forwarded(ctx, y, u); // apply wraps its own handle on y; the saved variable holds its own on u
            _lastSave = new SaveReport(
                InputBytes: FusedAutograd.Bytes(saveX),
                ParameterBytes: FusedAutograd.Bytes(saveW) + FusedAutograd.Bytes(a) + FusedAutograd.Bytes(b),
                ActivationBytes: FusedAutograd.Bytes(saveU),
                OutputCacheReleased: false);
            return y;
        }

        /// <inheritdoc />
        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad_output)
        {
            var grads = new Tensor?[ArgCount];
            if (grad_output is null || grad_output.IsInvalid) return new List<Tensor>(grads!);
            FusedAutograd.ReleaseReturnedGradients();
            var args = (Args)ctx.get_data("args");
            // Exceptions cannot cross libtorch's engine back to the caller (the process would end), so nothing here throws
            // on purpose: every case is handled.
            List<Tensor> result;
            using (var scope = NewDisposeScope())
            {
                var saved = ctx.get_saved_variables();
                Tensor? x = saved[0], weight = saved[1], a = saved[2], b = saved[3], u = saved[4];
                if (is_grad_enabled() && x is not null)
                    BackwardWithGraph(args, grad_output, x, weight, a!, b!, grads);
                else
                    using (no_grad())
                        (grads[InputIndex], grads[AIndex], grads[BIndex]) = BackwardFused(args, grad_output, x, weight, a!, b!, u);
                if (args.NeedPrevious) grads[PreviousIndex] = grad_output;
                result = FusedAutograd.Return(grads, grad_output, scope);
            }
            if (!args.NeedPrevious) grad_output.Dispose();
            return result;
        }

        /// <summary>
        /// dX (low-rank part plus dY·W), dA and dB of the layer for upstream gradient <paramref name="gradOutput"/>, each
        /// null where <paramref name="args"/> says it is not needed. Never throws for tensors forward saved.
        /// </summary>
        internal static unsafe (Tensor? DX, Tensor? DA, Tensor? DB) BackwardFused(Args args, Tensor gradOutput, Tensor? x, Tensor? weight, Tensor a, Tensor b, Tensor? u)
        {
            long n = args.Rows, d = args.In, o = args.Out, r = a.shape[0];
            var dY = gradOutput.reshape(n, o);
            if (!dY.is_contiguous()) dY = dY.contiguous();
            var dA = args.NeedA ? torch.zeros(r, d, dtype: ScalarType.Float32) : null;
            var dBt = args.NeedB ? torch.zeros(r, o, dtype: ScalarType.Float32) : null;
            var dX = args.NeedInput ? torch.empty(args.InputShape, dtype: ScalarType.Float32) : null;
            if (n > 0)
            {
                using var bt = new Transposed(b);
                var problem = Problem(args, args.NeedA ? x! : null, a, bt.Floats);
                float* dYp = TensorData.Floats(dY), up = args.NeedB ? TensorData.Floats(u!) : null;
                float* dXp = dX is null ? null : TensorData.Floats(dX), dAp = dA is null ? null : TensorData.Floats(dA);
                float* dBp = dBt is null ? null : TensorData.Floats(dBt);
                LoRAKernels.BackwardAll(problem, dYp, up, dXp, dAp, dBp, KernelThreads(args, r));
                if (dX is not null && weight is not null)
                    dX.view(n, d).addmm_(dY, weight, beta: 1, alpha: 1); // + dY·W, the frozen layer's own input gradient
            }
            return (dX, dA, dBt?.t());
        }

        /// <summary>Workers for the thin half, when a test or benchmark fixes them.</summary>
        internal static int? KernelThreadsOverride { get; set; }

        /// <summary>Multiply-adds of one thin pass, n·(in + out)·r, from which sharing rows between workers pays.</summary>
        internal const long ParallelWork = 1L << 27;

        /// <summary>The same once libgomp's idle workers sleep soon (<see cref="Native.OpenMpTuning"/>): a few chunks' worth.</summary>
        internal const long ShortSpinParallelWork = 1L << 22;

        // libtorch's intra-op thread count, or the calling thread alone for small thin halves. Right after a GEMM,
        // libgomp's worker spins on the other core, by default for milliseconds, and a .NET worker that lands there
        // stalls the caller longer than a small thin half takes alone (on two cores, n = 2048, d = 1024, r = 16 was
        // faster on one thread; d = 4096 or r = 64 on two). With the spin shortened, two threads win there too
        // (benchmarks/README.md, "Threads").
        private static int KernelThreads(Args args, long rank) =>
            KernelThreadsOverride ?? KernelWorkers.Count(args.Rows * (args.In + args.Out) * rank, ParallelWork, ShortSpinParallelWork);

        /// <summary>
        /// Bᵀ ([r, out]) of a contiguous B [out, r], in native memory: a plain loop over r·out floats, where
        /// <c>b.t().contiguous()</c> is a libtorch op whose thread hand-off costs more than the copy on a loaded machine.
        /// </summary>
        internal readonly unsafe struct Transposed : IDisposable
        {
            internal readonly float* Floats;

            internal Transposed(Tensor b)
            {
                long o = b.shape[0], r = b.shape[1];
                Floats = (float*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)Math.Max(1, o * r), sizeof(float));
                float* src = TensorData.Floats(b);
                // Row by row of Bᵀ: sequential writes, reads r floats apart from a B that stays in cache.
                for (long k = 0; k < r; k++)
                {
                    float* dst = Floats + k * o, col = src + k;
                    for (long j = 0; j < o; j++) dst[j] = col[j * r];
                }
            }

            public void Dispose() => System.Runtime.InteropServices.NativeMemory.Free(Floats);
        }

        private static unsafe LoRAProblem Problem(Args args, Tensor? x, Tensor a, float* bt) => new()
        {
            X = x is null ? null : TensorData.Floats(x),
            A = TensorData.Floats(a),
            Bt = bt,
            Rows = args.Rows,
            In = checked((int)args.In),
            Out = checked((int)args.Out),
            Rank = checked((int)a.shape[0]),
            Scale = args.Scaling * (args.Mask.DropsAny ? args.Mask.KeepScale : 1f),
            Mask = args.Mask,
        };

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

        // y = [previous | b] + c·u·Bᵀ + x·Wᵀ with u = (x ⊙ keep)·Aᵀ, c = s / (1 − p), all in one output buffer: the thin
        // half by LoRAKernels (one pass over x, mask in registers), then libtorch's GEMM adds x·Wᵀ in place.
        internal static unsafe (Tensor Y, Tensor U) Compute(Tensor x, Tensor? previous, Tensor? weight, Tensor? bias, Tensor a, Tensor b, Args args)
        {
            long n = args.Rows, d = args.In, o = args.Out, r = a.shape[0];
            var outShape = args.InputShape.ToArray();
            outShape[^1] = o;
            var y = torch.empty(outShape, dtype: ScalarType.Float32);
            var u = torch.empty(n, r, dtype: ScalarType.Float32);
            if (n == 0) return (y, u);
            using var x2 = x.view(n, d);
            using var bt = new Transposed(b);
            using var prev = previous?.reshape(n, o).contiguous();
            var problem = Problem(args, x2, a, bt.Floats);
            float* biasP = bias is null ? null : TensorData.Floats(bias), prevP = prev is null ? null : TensorData.Floats(prev);
            LoRAKernels.ForwardAll(problem, biasP, prevP, TensorData.Floats(u), TensorData.Floats(y), KernelThreads(args, r));
            if (weight is not null)
            {
                using var y2 = y.view(n, o);
                using var wt = weight.t();
                y2.addmm_(x2, wt, beta: 1, alpha: 1);
            }
            return (y, u);
        }

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
        /// Whether the fused function runs for these tensors: dense float32 CPU tensors, a frozen base, and 256-bit
        /// vectors in hardware (elsewhere, an ARM64 machine for one, .NET would emulate the kernels' vectors and the
        /// composed TorchSharp ops are faster).
        /// </summary>
        internal static bool CanFuse(Tensor x, Tensor? previous, Tensor? weight, Tensor? bias, Tensor a, Tensor b) =>
            Vector256.IsHardwareAccelerated && TensorData.IsDenseCpuFloat(x) && TensorData.IsDenseCpuFloat(a) && TensorData.IsDenseCpuFloat(b)
            && (previous is null || (previous.dtype == ScalarType.Float32 && previous.device_type == DeviceType.CPU))
            && (weight is null || (TensorData.IsDenseCpuFloat(weight) && !weight.requires_grad))
            && (bias is null || (TensorData.IsDenseCpuFloat(bias) && !bias.requires_grad));

        /// <summary>Why <see cref="CanFuse"/> is false, for <see cref="FusedKernels.Fallback"/>.</summary>
        internal static string WhyNotFused(Tensor x, Tensor? previous, Tensor? weight, Tensor? bias, Tensor a, Tensor b) =>
            FusedKernels.WhyNot(("input", x, false), ("A", a, false), ("B", b, false), ("base weight", weight, true), ("base bias", bias, true))
            ?? "the previous output is not float32 on the CPU";

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
