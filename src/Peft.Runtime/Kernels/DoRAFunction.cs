using System;
using System.Collections.Generic;
using Peft.Runtime.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// A DoRA layer without dropout as one autograd function: y = g ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ) + b, with g = m / n and
    /// n = ‖W + s·B·A‖ per output row (a constant for the gradient, as in PEFT), W and b frozen.
    /// </summary>
    /// <remarks>
    /// <para><b>The norm, once per forward, without B·A.</b> ‖W_o + s(BA)_o‖² = ‖W_o‖² + 2s·⟨B_o, (W·Aᵀ)_o⟩ +
    /// s²·⟨B_o, (B·(A·Aᵀ))_o⟩: W·Aᵀ and B·(A·Aᵀ) ([out, r]) by GEMM and one pass over W's rows for ‖W_o‖², instead of
    /// the dense [out, in] update and a second pass over it. A row where W + ΔW is zero (n = 0) passes through with g = 1, as <see cref="DoRA.Factor"/> has it;
    /// rounding can leave n² slightly negative where the terms cancel, and it is clamped to 0.</para>
    /// <para><b>Forward</b> computes z = x·Wᵀ + s·u·Bᵀ (u = x·Aᵀ) the way <see cref="LoRAFunction"/> does, in one
    /// buffer (GEMMs), then y = g ⊙ z + b in one pass (<see cref="DoRAKernels"/>: the passes between the GEMMs are
    /// hand-written loops sharing rows between the intra-op threads). It saves x (the
    /// input itself), u [n, r], and z [n, out]: m's gradient Σᵢ dY[i, o]·z[i, o] / n_o needs z, and recomputing it
    /// would cost a second base GEMM.</para>
    /// <para><b>Backward</b> forms dZ = g ⊙ dY and m's gradient in one pass over dY and z, then runs LoRA's fused
    /// backward on dZ: dA, dB and dX = dZ·W + s·(dZ·B)·A in one buffer, never a gradient for W or b.</para>
    /// <para><b>Dropout.</b> PEFT's formula in training, y = x·Wᵀ + b + (g − 1) ⊙ xd·Wᵀ + g ⊙ s·(xd·Aᵀ)·Bᵀ with
    /// xd = drop(x), is y = b + e·Wᵀ + g ⊙ zd with e = x − xd and zd = xd·Wᵀ + s·(xd·Aᵀ)·Bᵀ: the same function on
    /// xd plus one more GEMM on e, the second base product the formula needs whatever the kernel. The mask is
    /// <see cref="DropoutMask"/>'s (Philox), split into xd and e in one pass and regenerated in backward, where
    /// dX = dE + k ⊙ (dXd − dE) (k the scaled mask) joins the gradients through e (dY·W) and through xd.</para>
    /// <para>Other dtypes, devices and layouts, and an unfrozen base, take the same formula composed from TorchSharp
    /// ops.</para>
    /// </remarks>
    public sealed class DoRAFunction : torch.autograd.SingleTensorFunction<DoRAFunction>
    {
        private const int InputIndex = 0, WeightIndex = 1, BiasIndex = 2, AIndex = 3, BIndex = 4, MagnitudeIndex = 5, ArgCount = 7;

        [ThreadStatic] private static SaveReport? _lastSave;

        /// <inheritdoc />
        public override string Name => nameof(DoRAFunction);

        /// <summary>What the last fused forward on this thread saved for backward (for tests and benchmarks).</summary>
        internal static SaveReport? LastSave => _lastSave;

        /// <summary>
        /// y = g ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ) + b for a frozen Linear (<paramref name="weight"/> [out, in],
        /// <paramref name="bias"/> [out] or null) and one DoRA adapter (<paramref name="loraA"/> [r, in],
        /// <paramref name="loraB"/> [out, r], <paramref name="magnitude"/> [out]).
        /// </summary>
        /// <param name="input">The layer input, [..., in].</param>
        /// <param name="weight">The frozen base weight.</param>
        /// <param name="bias">The frozen base bias, or null.</param>
        /// <param name="loraA">LoRA's A factor.</param>
        /// <param name="loraB">LoRA's B factor.</param>
        /// <param name="magnitude">DoRA's magnitude vector m.</param>
        /// <param name="scaling">s: α / r (or α / √r).</param>
        public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias, Tensor loraA, Tensor loraB, Tensor magnitude, double scaling) =>
            Linear(input, weight, bias, loraA, loraB, magnitude, scaling, 0);

        /// <summary>
        /// The same layer with dropout <paramref name="dropout"/> on the adapter's input, as PEFT computes DoRA in
        /// training: y = x·Wᵀ + b + (g − 1) ⊙ drop(x)·Wᵀ + g ⊙ s·(drop(x)·Aᵀ)·Bᵀ.
        /// </summary>
        /// <param name="input">The layer input, [..., in].</param>
        /// <param name="weight">The frozen base weight.</param>
        /// <param name="bias">The frozen base bias, or null.</param>
        /// <param name="loraA">LoRA's A factor.</param>
        /// <param name="loraB">LoRA's B factor.</param>
        /// <param name="magnitude">DoRA's magnitude vector m.</param>
        /// <param name="scaling">s: α / r (or α / √r).</param>
        /// <param name="dropout">Dropout probability on the adapter input, in [0, 1); 0 in evaluation.</param>
        public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias, Tensor loraA, Tensor loraB, Tensor magnitude, double scaling, double dropout) =>
            Apply(input, weight, bias, loraA, loraB, magnitude, scaling, dropout, dropout > 0 ? LoRAFunction.NextSeed() : 0);

        /// <summary>The fused forward with an explicit dropout seed (tests compare it with a composition using the same mask).</summary>
        internal static Tensor Apply(Tensor input, Tensor weight, Tensor? bias, Tensor loraA, Tensor loraB, Tensor magnitude,
            double scaling, double dropout, ulong seed)
        {
            FusedAutograd.ReleaseReturnedGradients();
            var shape = LoRAFunction.Validate(input, null, weight, bias, loraA, loraB, dropout);
            if (magnitude.dim() != 1 || magnitude.shape[0] != shape.Out)
                throw new ArgumentException($"The DoRA magnitude [{string.Join(", ", magnitude.shape)}] does not fit {shape.Out} outputs.");
            var mask = new DropoutMask(seed, dropout);
            if (FusedKernels.WhyNot(("input", input, false), ("A", loraA, false), ("B", loraB, false), ("base weight", weight, true),
                    ("base bias", bias, true), ("magnitude", magnitude, false)) is { } why)
            {
                FusedKernels.Record(nameof(DoRAFunction), why);
                return Composed(input, weight, bias, loraA, loraB, magnitude, scaling, mask);
            }

            // The LoRA part runs on the dropped input xd, without a mask of its own.
            var lora = new LoRAFunction.Args((float)scaling, new DropoutMask(0, 0), shape.Rows, shape.In, shape.Out, input.shape,
                NeedInput: input.requires_grad, NeedPrevious: false, NeedA: loraA.requires_grad, NeedB: loraB.requires_grad);
            var args = new Args(lora, mask, NeedMagnitude: magnitude.requires_grad);
            bool needsGraph = is_grad_enabled() && (input.requires_grad || loraA.requires_grad || loraB.requires_grad || magnitude.requires_grad);
            if (!needsGraph)
            {
                using var scope = NewDisposeScope();
                var (y, _, _, _, _) = Compute(input, weight, bias, loraA, loraB, magnitude, args);
                return scope.MoveToOuter(y);
            }
            var (output, released) = FusedAutograd.Run(() => apply(input, weight, bias, loraA, loraB, magnitude, args));
            if (_lastSave is { } report) _lastSave = report with { OutputCacheReleased = released };
            return output;
        }

        /// <summary>
        /// n = ‖W + s·B·A‖ per row of <paramref name="weight"/> and g = m / n (1 where n = 0), both [out], without
        /// gradient, from the thin products W·Aᵀ and B·(A·Aᵀ) (<see cref="DoRAKernels.NormAndFactor"/>). All four tensors must be
        /// contiguous float32 CPU tensors.
        /// </summary>
        internal static unsafe (Tensor Norm, Tensor Factor) NormAndFactor(Tensor weight, Tensor a, Tensor b, Tensor magnitude, double scaling)
        {
            long outF = weight.shape[0], inF = weight.shape[1], r = a.shape[0];
            var norm = torch.empty(outF, dtype: ScalarType.Float32);
            var factor = torch.empty(outF, dtype: ScalarType.Float32);
            if (outF > 0)
            {
                // The thin products by GEMM: W·Aᵀ [out, r] and B·(A·Aᵀ) [out, r].
                using var at = a.t();
                using var wa = weight.mm(at);
                using var gram = a.mm(at);
                using var bg = b.mm(gram);
                DoRAKernels.NormAndFactor(TensorData.Floats(weight), TensorData.Floats(wa), TensorData.Floats(b), TensorData.Floats(bg), TensorData.Floats(magnitude),
                    TensorData.Floats(norm), TensorData.Floats(factor), checked((int)outF), checked((int)inF), checked((int)r), scaling,
                    PassThreads(outF * inF));
            }
            return (norm, factor);
        }

        /// <summary>Workers for the norm's rows and the row passes (scaling, correlation, dropout mask), when a test fixes them.</summary>
        internal static int? KernelThreadsOverride { get; set; }

        // Both cores for a pass over W's rows or the [n, in] and [n, out] elements from two spans of DoRAKernels' mask
        // size up, once libgomp's workers sleep soon (Native.OpenMpTuning); the calling thread alone otherwise.
        private static int PassThreads(long elements) =>
            KernelThreadsOverride ?? KernelWorkers.Count(elements, long.MaxValue, 1L << 19);

        /// <inheritdoc />
        public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[InputIndex];
            var weight = (Tensor)vars[WeightIndex];
            var bias = vars[BiasIndex] as Tensor;
            var a = (Tensor)vars[AIndex];
            var b = (Tensor)vars[BIndex];
            var m = (Tensor)vars[MagnitudeIndex];
            var args = (Args)vars[ArgCount - 1];

            var (y, z, u, norm, factor) = Compute(x, weight, bias, a, b, m, args);
            var lora = args.LoRA;
            // Only what backward reads: x for dA (with dropout, xd is regenerated from it), W and A for dX, B for dZ·B,
            // u for dB, z and n for dm, g for dZ.
            var saveX = lora.NeedA ? x : null;
            var saveW = lora.NeedInput || args.NeedMagnitude ? weight : null; // m's gradient under create_graph recomputes x·Wᵀ
            var saveU = lora.NeedB ? u : null;
            var saveZ = args.NeedMagnitude ? z : null;
            ctx.save_for_backward(new List<Tensor> { saveX!, saveW!, a, b, saveU!, saveZ!, norm, factor, m });
            ctx.save_data("args", args);
            FusedAutograd.Forwarded(ctx, y, z, u, norm, factor);
            _lastSave = new SaveReport(
                InputBytes: FusedAutograd.Bytes(saveX),
                ParameterBytes: FusedAutograd.Bytes(saveW) + FusedAutograd.Bytes(a) + FusedAutograd.Bytes(b) + FusedAutograd.Bytes(m),
                ActivationBytes: FusedAutograd.Bytes(saveU) + FusedAutograd.Bytes(saveZ) + FusedAutograd.Bytes(norm) + FusedAutograd.Bytes(factor),
                OutputCacheReleased: false);
            return y;
        }

        /// <inheritdoc />
        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad_output) =>
            FusedAutograd.Backward(grad_output, ArgCount, grads =>
            {
                var args = (Args)ctx.get_data("args");
                var saved = ctx.get_saved_variables();
                Tensor? x = saved[0], weight = saved[1], a = saved[2], b = saved[3], u = saved[4], z = saved[5];
                Tensor norm = saved[6], factor = saved[7], m = saved[8];
                if (is_grad_enabled() && x is not null)
                    BackwardWithGraph(args, grad_output, x, weight, a, b, m, norm, grads);
                else
                    using (no_grad())
                        BackwardFused(args, grad_output, x, weight, a, b, u, z, norm, factor, grads);
            });

        // z = x·Wᵀ + s·u·Bᵀ through LoRA's fused forward (no bias), then y = g ⊙ z + b. With dropout z is taken on
        // xd = drop(x), and y gains e·Wᵀ with e = x − xd.
        private static (Tensor Y, Tensor Z, Tensor U, Tensor Norm, Tensor Factor) Compute(Tensor x, Tensor weight, Tensor? bias, Tensor a, Tensor b, Tensor m, Args args)
        {
            var (norm, factor) = NormAndFactor(weight, a, b, m, args.LoRA.Scaling);
            long n = args.LoRA.Rows, o = args.LoRA.Out;
            Tensor? dropped = null, removed = null;
            if (args.Mask.DropsAny)
                (dropped, removed) = SplitDropped(x, args.Mask, withRemoved: true);
            var (z, u, _) = LoRAFunction.Compute(dropped ?? x, null, weight, null, a, b, args.LoRA);
            var y = torch.empty_like(z);
            unsafe
            {
                if (n > 0)
                    DoRAKernels.ScaleRows(TensorData.Floats(z), TensorData.Floats(factor), bias is null ? null : TensorData.Floats(bias),
                        TensorData.Floats(y), n, checked((int)o), PassThreads(n * o));
            }
            if (removed is not null)
            {
                if (n > 0)
                {
                    using var y2 = y.view(n, o);
                    using var e2 = removed.view(n, args.LoRA.In);
                    using var wt = weight.t();
                    y2.addmm_(e2, wt, beta: 1, alpha: 1);
                }
                removed.Dispose();
                dropped!.Dispose();
            }
            return (y, z, u, norm, factor);
        }

        /// <summary>xd = drop(x) and, if <paramref name="withRemoved"/>, e = x − xd: fresh contiguous tensors shaped like x.</summary>
        private static unsafe (Tensor Dropped, Tensor? Removed) SplitDropped(Tensor x, DropoutMask mask, bool withRemoved)
        {
            var dropped = torch.empty_like(x);
            var removed = withRemoved ? torch.empty_like(x) : null;
            long count = x.numel();
            if (count > 0)
                DoRAKernels.SplitDropped(mask, TensorData.Floats(x), TensorData.Floats(dropped), removed is null ? null : TensorData.Floats(removed),
                    count, PassThreads(count));
            return (dropped, removed);
        }

        private static unsafe void BackwardFused(Args args, Tensor gradOutput, Tensor? x, Tensor? weight, Tensor a, Tensor b,
            Tensor? u, Tensor? z, Tensor norm, Tensor factor, Tensor?[] grads)
        {
            var lora = args.LoRA;
            long n = lora.Rows, o = lora.Out;
            var dY = gradOutput.reshape(n, o);
            if (!dY.is_contiguous()) dY = dY.contiguous();
            var dZ = ThreadScratch.Floats(n, o); // read by LoRA's backward below and dead when it returns
            var correlation = args.NeedMagnitude ? torch.zeros(o, dtype: ScalarType.Float32) : null;
            if (n > 0)
                DoRAKernels.ScaleAndCorrelate(TensorData.Floats(dY), TensorData.Floats(factor), args.NeedMagnitude ? TensorData.Floats(z!) : null,
                    TensorData.Floats(dZ), correlation is null ? null : TensorData.Floats(correlation), n, (int)o, PassThreads(n * o));
            if (lora.NeedInput || lora.NeedA || lora.NeedB)
            {
                // With dropout the LoRA part saw xd: regenerate it for dA (the mask comes from the seed, not memory).
                using var dropped = args.Mask.DropsAny && lora.NeedA ? SplitDropped(x!, args.Mask, withRemoved: false).Dropped : null;
                (grads[InputIndex], grads[AIndex], grads[BIndex]) = LoRAFunction.BackwardFused(lora, dZ, dropped ?? x, weight, a, b, u);
                if (args.Mask.DropsAny && grads[InputIndex] is { } dX && n > 0)
                {
                    // dX = dE + k ⊙ (dXd − dE), dE = dY·W the gradient through e = x − xd.
                    using var dE = dY.mm(weight!);
                    DoRAKernels.MergeDropped(args.Mask, TensorData.Floats(dE), TensorData.Floats(dX), dX.numel(), PassThreads(dX.numel()));
                }
            }
            if (correlation is not null)
            {
                var dm = torch.empty(o, dtype: ScalarType.Float32);
                DoRAKernels.MagnitudeGradient(TensorData.Floats(correlation), TensorData.Floats(norm), TensorData.Floats(dm), (int)o);
                grads[MagnitudeIndex] = dm;
            }
        }

        // create_graph: recompute the layer with differentiable ops (the same constant norm and mask) and differentiate that.
        private static void BackwardWithGraph(Args args, Tensor gradOutput, Tensor x, Tensor? weight, Tensor? a, Tensor? b, Tensor m, Tensor norm, Tensor?[] grads)
        {
            var lora = args.LoRA;
            var inputs = new List<Tensor>();
            if (lora.NeedInput) inputs.Add(x);
            if (lora.NeedA) inputs.Add(a!);
            if (lora.NeedB) inputs.Add(b!);
            if (args.NeedMagnitude) inputs.Add(m);
            if (inputs.Count == 0) return;
            var y = Formula(x, weight, a!, b!, DoRA.Factor(m, norm), lora.Scaling, args.Mask); // differentiable in m, n a constant
            var result = torch.autograd.grad(new[] { y }, inputs, new[] { gradOutput }, retain_graph: true, create_graph: true, allow_unused: true);
            int k = 0;
            if (lora.NeedInput) grads[InputIndex] = result[k++];
            if (lora.NeedA) grads[AIndex] = result[k++];
            if (lora.NeedB) grads[BIndex] = result[k++];
            if (args.NeedMagnitude) grads[MagnitudeIndex] = result[k];
        }

        // The same formula from TorchSharp ops, for what the raw loops do not handle.
        private static Tensor Composed(Tensor x, Tensor weight, Tensor? bias, Tensor a, Tensor b, Tensor m, double scaling, DropoutMask mask)
        {
            using var scope = NewDisposeScope();
            Tensor norm;
            using (no_grad()) norm = DoRA.RowNorm(weight.detach().addmm(b.detach(), a.detach(), beta: 1, alpha: (float)scaling));
            var y = Formula(x, weight, a, b, DoRA.Factor(m, norm), scaling, mask);
            return scope.MoveToOuter(bias is null ? y : y.add(bias));
        }

        // g ⊙ (xd·Wᵀ + s·(xd·Aᵀ)·Bᵀ) + (x − xd)·Wᵀ without the bias, xd = drop(x) (x itself without dropout): PEFT's
        // x·Wᵀ + (g − 1) ⊙ xd·Wᵀ + g ⊙ s·B·A·xd. W may be missing only where no gradient needs the terms it is in.
        // On CPU the mask is the same Philox mask as the fused path's; elsewhere libtorch's own dropout.
        private static Tensor Formula(Tensor x, Tensor? weight, Tensor a, Tensor b, Tensor factor, double scaling, DropoutMask mask)
        {
            var dropped = !mask.DropsAny ? x
                : x.device_type == DeviceType.CPU ? x.mul(LoRAFunction.MaskTensor(mask.Seed, mask.Probability, x.shape).to(x.dtype))
                : nn.functional.dropout(x, mask.Probability, training: true);
            var z = nn.functional.linear(nn.functional.linear(dropped, a), b).mul(scaling);
            if (weight is not null) z = z.add(nn.functional.linear(dropped, weight));
            var y = z.mul(factor);
            return mask.DropsAny && weight is not null ? y.add(nn.functional.linear(x.sub(dropped), weight)) : y;
        }

        internal sealed record Args(LoRAFunction.Args LoRA, DropoutMask Mask, bool NeedMagnitude);
    }
}
