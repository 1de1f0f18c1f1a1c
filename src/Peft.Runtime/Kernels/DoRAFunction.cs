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
    /// s²·⟨B_o, (B·(A·Aᵀ))_o⟩: one pass over W computing W·Aᵀ ([out, r]) instead of the dense [out, in] update and a
    /// second pass over it. A row where W + ΔW is zero (n = 0) passes through with g = 1, as <see cref="DoRA.Factor"/> has it;
    /// rounding can leave n² slightly negative where the terms cancel, and it is clamped to 0.</para>
    /// <para><b>Forward</b> computes z = x·Wᵀ + s·u·Bᵀ (u = x·Aᵀ) the way <see cref="LoRAFunction"/> does, in one
    /// buffer (the thin half by hand, then libtorch's GEMM in place), then y = g ⊙ z + b in one pass
    /// (<see cref="DoRAKernels"/>: every step but the two GEMMs is a hand-written loop on the calling thread). It saves x (the
    /// input itself), u [n, r], and z [n, out]: m's gradient Σᵢ dY[i, o]·z[i, o] / n_o needs z, and recomputing it
    /// would cost a second base GEMM.</para>
    /// <para><b>Backward</b> forms dZ = g ⊙ dY and m's gradient in one pass over dY and z, then runs LoRA's fused
    /// backward on dZ: dA, dB and dX = dZ·W + s·(dZ·B)·A in one buffer, never a gradient for W or b.</para>
    /// <para>Dropout is not handled here: PEFT's DoRA with dropout needs the base product of the dropped input too,
    /// a second GEMM whatever the kernel, and <see cref="LoRALinear"/> composes it. Other dtypes, devices and
    /// layouts, and an unfrozen base, take the same formula composed from TorchSharp ops.</para>
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
        public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias, Tensor loraA, Tensor loraB, Tensor magnitude, double scaling)
        {
            FusedAutograd.ReleaseReturnedGradients();
            var shape = LoRAFunction.Validate(input, null, weight, bias, loraA, loraB, 0);
            if (magnitude.dim() != 1 || magnitude.shape[0] != shape.Out)
                throw new ArgumentException($"The DoRA magnitude [{string.Join(", ", magnitude.shape)}] does not fit {shape.Out} outputs.");
            if (!LoRAFunction.CanFuse(input, null, weight, bias, loraA, loraB) || !TensorData.IsDenseCpuFloat(magnitude))
                return Composed(input, weight, bias, loraA, loraB, magnitude, scaling);

            var lora = new LoRAFunction.Args((float)scaling, new DropoutMask(0, 0), shape.Rows, shape.In, shape.Out, input.shape,
                NeedInput: input.requires_grad, NeedPrevious: false, NeedA: loraA.requires_grad, NeedB: loraB.requires_grad);
            var args = new Args(lora, NeedMagnitude: magnitude.requires_grad);
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
        /// gradient, from the thin product W·Aᵀ (<see cref="DoRAKernels.NormAndFactor"/>). All four tensors must be
        /// contiguous float32 CPU tensors.
        /// </summary>
        internal static unsafe (Tensor Norm, Tensor Factor) NormAndFactor(Tensor weight, Tensor a, Tensor b, Tensor magnitude, double scaling)
        {
            long outF = weight.shape[0], inF = weight.shape[1], r = a.shape[0];
            var norm = torch.empty(outF, dtype: ScalarType.Float32);
            var factor = torch.empty(outF, dtype: ScalarType.Float32);
            if (outF > 0)
                DoRAKernels.NormAndFactor(TensorData.Floats(weight), TensorData.Floats(a), TensorData.Floats(b), TensorData.Floats(magnitude),
                    TensorData.Floats(norm), TensorData.Floats(factor), checked((int)outF), checked((int)inF), checked((int)r), scaling);
            return (norm, factor);
        }

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
            // Only what backward reads: x for dA, W and A for dX, B for dZ·B, u for dB, z and n for dm, g for dZ.
            var saveX = lora.NeedA ? x : null;
            var saveW = lora.NeedInput ? weight : null;
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
        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad_output)
        {
            var grads = new Tensor?[ArgCount];
            if (grad_output is null || grad_output.IsInvalid) return new List<Tensor>(grads!);
            FusedAutograd.ReleaseReturnedGradients();
            var args = (Args)ctx.get_data("args");
            // Nothing here throws on purpose: an exception cannot cross libtorch's engine back to the caller.
            List<Tensor> result;
            using (var scope = NewDisposeScope())
            {
                var saved = ctx.get_saved_variables();
                Tensor? x = saved[0], weight = saved[1], a = saved[2], b = saved[3], u = saved[4], z = saved[5];
                Tensor norm = saved[6], factor = saved[7], m = saved[8];
                if (is_grad_enabled() && x is not null)
                    BackwardWithGraph(args, grad_output, x, weight, a, b, m, norm, grads);
                else
                    using (no_grad())
                        BackwardFused(args, grad_output, x, weight, a, b, u, z, norm, factor, grads);
                result = FusedAutograd.Return(grads, grad_output, scope);
            }
            grad_output.Dispose();
            return result;
        }

        // z = x·Wᵀ + s·u·Bᵀ through LoRA's fused forward (no bias), then y = g ⊙ z + b.
        private static (Tensor Y, Tensor Z, Tensor U, Tensor Norm, Tensor Factor) Compute(Tensor x, Tensor weight, Tensor? bias, Tensor a, Tensor b, Tensor m, Args args)
        {
            var (norm, factor) = NormAndFactor(weight, a, b, m, args.LoRA.Scaling);
            var (z, u) = LoRAFunction.Compute(x, null, weight, null, a, b, args.LoRA);
            var y = torch.empty_like(z);
            unsafe
            {
                if (args.LoRA.Rows > 0)
                    DoRAKernels.ScaleRows(TensorData.Floats(z), TensorData.Floats(factor), bias is null ? null : TensorData.Floats(bias),
                        TensorData.Floats(y), args.LoRA.Rows, checked((int)args.LoRA.Out));
            }
            return (y, z, u, norm, factor);
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
                    TensorData.Floats(dZ), correlation is null ? null : TensorData.Floats(correlation), n, (int)o);
            if (lora.NeedInput || lora.NeedA || lora.NeedB)
                (grads[InputIndex], grads[AIndex], grads[BIndex]) = LoRAFunction.BackwardFused(lora, dZ, x, weight, a, b, u);
            if (correlation is not null)
            {
                var dm = torch.empty(o, dtype: ScalarType.Float32);
                DoRAKernels.MagnitudeGradient(TensorData.Floats(correlation), TensorData.Floats(norm), TensorData.Floats(dm), (int)o);
                grads[MagnitudeIndex] = dm;
            }
        }

        // create_graph: recompute the layer with differentiable ops (the same constant norm) and differentiate that.
        private static void BackwardWithGraph(Args args, Tensor gradOutput, Tensor x, Tensor? weight, Tensor? a, Tensor? b, Tensor m, Tensor norm, Tensor?[] grads)
        {
            var lora = args.LoRA;
            var g = DoRA.Factor(m, norm); // differentiable in m, n a constant
            var z = nn.functional.linear(nn.functional.linear(x, a!), b!).mul(lora.Scaling);
            if (weight is not null) z = z.add(nn.functional.linear(x, weight));
            var y = z.mul(g);
            var inputs = new List<Tensor>();
            if (lora.NeedInput) inputs.Add(x);
            if (lora.NeedA) inputs.Add(a!);
            if (lora.NeedB) inputs.Add(b!);
            if (args.NeedMagnitude) inputs.Add(m);
            if (inputs.Count == 0) return;
            var result = torch.autograd.grad(new[] { y }, inputs, new[] { gradOutput }, retain_graph: true, create_graph: true, allow_unused: true);
            int k = 0;
            if (lora.NeedInput) grads[InputIndex] = result[k++];
            if (lora.NeedA) grads[AIndex] = result[k++];
            if (lora.NeedB) grads[BIndex] = result[k++];
            if (args.NeedMagnitude) grads[MagnitudeIndex] = result[k];
        }

        // The same formula from TorchSharp ops, for what the raw loops do not handle.
        private static Tensor Composed(Tensor x, Tensor weight, Tensor? bias, Tensor a, Tensor b, Tensor m, double scaling)
        {
            using var scope = NewDisposeScope();
            Tensor norm;
            using (no_grad()) norm = DoRA.RowNorm(weight.detach().addmm(b.detach(), a.detach(), beta: 1, alpha: (float)scaling));
            var factor = DoRA.Factor(m, norm);
            var z = nn.functional.linear(x, weight).add(nn.functional.linear(nn.functional.linear(x, a), b), alpha: scaling);
            var y = z.mul(factor);
            return scope.MoveToOuter(bias is null ? y : y.add(bias));
        }

        internal sealed record Args(LoRAFunction.Args LoRA, bool NeedMagnitude);
    }
}
