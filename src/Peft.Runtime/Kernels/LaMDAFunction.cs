using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// LaMDA's adapter path as one autograd function: y = previous + s·(h·Sᵀ)·Bᵀ with h = drop(x)·Aᵀ, A [r, in] frozen,
    /// S [r, r] and B [out, r] trainable (B's first <c>frozenColumns</c> columns frozen).
    /// </summary>
    /// <remarks>
    /// <para>Because A is frozen, backward needs x only through h: it saves h ([n, r]) and a 64-bit dropout seed, never x
    /// ([n, in]) nor a mask. With g = s·dY·B: dB = s·dYᵀ·(h·Sᵀ) (its frozen columns zero), dS = gᵀ·h, and the adapter's
    /// part of dX = ((g·S)·A) ⊙ keep, the mask regenerated from the seed (<see cref="DropoutMask"/>, as LoRA's). The
    /// frozen base output <c>previous</c> (computed by the base layer, which saves no input for a frozen weight) takes
    /// dY unchanged. TorchSharp ops throughout, so any dtype and device.</para>
    /// <para>Second derivatives are not available through it (x is not saved): backward does not build a graph.</para>
    /// </remarks>
    public sealed class LaMDAFunction : torch.autograd.SingleTensorFunction<LaMDAFunction>
    {
        private const int InputIndex = 0, PreviousIndex = 1, AIndex = 2, SIndex = 3, BIndex = 4, ArgCount = 6;

        [ThreadStatic] private static SaveReport? _lastSave;

        /// <inheritdoc />
        public override string Name => nameof(LaMDAFunction);

        /// <summary>What the last forward on this thread saved for backward (for tests and benchmarks).</summary>
        internal static SaveReport? LastSave => _lastSave;

        /// <summary>
        /// <paramref name="previous"/> ([..., out]) + s·(drop(x)·Aᵀ)·Sᵀ·Bᵀ for <paramref name="input"/> [..., in].
        /// </summary>
        /// <param name="previous">The layer's output so far (the base output, plus earlier adapters).</param>
        /// <param name="input">The layer input.</param>
        /// <param name="a">The frozen projection A [r, in].</param>
        /// <param name="core">The core S [r, r].</param>
        /// <param name="b">The projection B [out, r].</param>
        /// <param name="scaling">s = α / r.</param>
        /// <param name="dropout">Dropout probability on the adapter input, in [0, 1); 0 in evaluation.</param>
        /// <param name="frozenColumns">How many leading columns of B are frozen (their gradient is zero).</param>
        public static Tensor AddTo(Tensor previous, Tensor input, Tensor a, Tensor core, Tensor b, double scaling, double dropout, int frozenColumns) =>
            Apply(previous, input, a, core, b, scaling, dropout, frozenColumns, dropout > 0 ? LoRAFunction.NextSeed() : 0);

        /// <summary>The function with an explicit dropout seed (tests compare it with a composition using the same mask).</summary>
        internal static Tensor Apply(Tensor previous, Tensor input, Tensor a, Tensor core, Tensor b, double scaling, double dropout, int frozenColumns, ulong seed)
        {
            FusedAutograd.ReleaseReturnedGradients();
            long n = Validate(previous, input, a, core, b, dropout, frozenColumns);
            var args = new Args(scaling, dropout, seed, frozenColumns, n, input.shape, previous.shape,
                NeedInput: input.requires_grad, NeedPrevious: previous.requires_grad, NeedS: core.requires_grad, NeedB: b.requires_grad);
            bool needsGraph = is_grad_enabled() && (args.NeedInput || args.NeedPrevious || args.NeedS || args.NeedB);
            if (!needsGraph)
            {
                using var scope = NewDisposeScope();
                var (y, _) = Compute(previous, input, a, core, b, args);
                return scope.MoveToOuter(y);
            }
            var (output, released) = FusedAutograd.Run(() => apply(input, previous, a, core, b, args));
            if (_lastSave is { } report) _lastSave = report with { OutputCacheReleased = released };
            return output;
        }

        /// <inheritdoc />
        public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[InputIndex];
            var previous = (Tensor)vars[PreviousIndex];
            var a = (Tensor)vars[AIndex];
            var core = (Tensor)vars[SIndex];
            var b = (Tensor)vars[BIndex];
            var args = (Args)vars[ArgCount - 1];
            Tensor y, h;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                (y, h) = Compute(previous, x, a, core, b, args);
                y.MoveToOuterDisposeScope();
                h.MoveToOuterDisposeScope();
            }

            // Only what backward reads: h for dS and dB, A for dX, S and B always (references, not copies). Never x.
            var saveH = args.NeedS || args.NeedB ? h : null;
            var saveA = args.NeedInput ? a : null;
            ctx.save_for_backward(new List<Tensor> { saveH!, saveA!, core, b });
            ctx.save_data("args", args);
            FusedAutograd.Forwarded(ctx, y, h);
            _lastSave = new SaveReport(
                InputBytes: 0,
                ParameterBytes: FusedAutograd.Bytes(saveA) + FusedAutograd.Bytes(core) + FusedAutograd.Bytes(b),
                ActivationBytes: FusedAutograd.Bytes(saveH),
                OutputCacheReleased: false);
            return y;
        }

        /// <inheritdoc />
        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad_output) =>
            FusedAutograd.Backward(grad_output, ArgCount, grads =>
            {
                var args = (Args)ctx.get_data("args");
                var saved = ctx.get_saved_variables();
                using (no_grad())
                    (grads[InputIndex], grads[SIndex], grads[BIndex]) = Backward(args, grad_output, saved[0], saved[1], saved[2]!, saved[3]!);
                if (args.NeedPrevious) grads[PreviousIndex] = grad_output;
            });

        /// <summary>dX (the adapter's part), dS and dB for upstream gradient <paramref name="gradOutput"/>, each null where not needed.</summary>
        internal static (Tensor? DX, Tensor? DS, Tensor? DB) Backward(Args args, Tensor gradOutput, Tensor? h, Tensor? a, Tensor core, Tensor b)
        {
            long n = args.Rows, o = b.shape[0];
            var dY = gradOutput.reshape(n, o);
            var g = dY.matmul(b).mul(args.Scaling); // [n, r]
            Tensor? dB = null, dS = null, dX = null;
            if (args.NeedB)
            {
                dB = dY.t().matmul(h!.matmul(core.t())).mul(args.Scaling);
                if (args.FrozenColumns > 0) dB.narrow(1, 0, args.FrozenColumns).zero_();
            }
            if (args.NeedS) dS = g.t().matmul(h!);
            if (args.NeedInput)
            {
                var dx = g.matmul(core).matmul(a!);
                if (args.Dropout > 0) dx = dx.mul(Mask(args, dx));
                dX = dx.reshape(args.InputShape);
            }
            return (dX, dS, dB);
        }

        /// <summary>(y, h): y = previous + s·(h·Sᵀ)·Bᵀ with h = drop(x)·Aᵀ ([n, r]).</summary>
        private static (Tensor Y, Tensor H) Compute(Tensor previous, Tensor x, Tensor a, Tensor core, Tensor b, Args args)
        {
            long n = args.Rows;
            var x2 = x.reshape(n, x.shape[^1]);
            if (args.Dropout > 0) x2 = x2.mul(Mask(args, x2));
            var h = x2.matmul(a.t());
            var y = previous.reshape(n, b.shape[0]).add(h.matmul(core.t()).matmul(b.t()), alpha: args.Scaling);
            return (y.reshape(args.PreviousShape), h);
        }

        /// <summary>The dropout mask (0 or 1 / (1 − p)) of the call's seed, shaped [n, in], in <paramref name="like"/>'s dtype and device.</summary>
        private static Tensor Mask(Args args, Tensor like) =>
            LoRAFunction.MaskTensor(args.Seed, args.Dropout, new[] { args.Rows, args.InputShape[^1] }).to(like.dtype, like.device);

        private static long Validate(Tensor previous, Tensor x, Tensor a, Tensor core, Tensor b, double dropout, int frozenColumns)
        {
            if (!(dropout >= 0 && dropout < 1))
                throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "LaMDA dropout must lie in [0, 1)");
            if (x.dim() < 1) throw new ArgumentException("LaMDAFunction needs an input of shape [..., in].");
            long d = x.shape[^1];
            if (a.dim() != 2 || core.dim() != 2 || b.dim() != 2 || a.shape[1] != d || core.shape[0] != a.shape[0] || core.shape[1] != a.shape[0] || b.shape[1] != a.shape[0])
                throw new ArgumentException(
                    $"LaMDA factors do not fit: input [..., {d}], A [{string.Join(", ", a.shape)}], S [{string.Join(", ", core.shape)}], B [{string.Join(", ", b.shape)}].");
            long o = b.shape[0];
            if (!previous.shape.SequenceEqual(x.shape.Take(x.shape.Length - 1).Append(o)))
                throw new ArgumentException($"The previous output [{string.Join(", ", previous.shape)}] does not fit input [{string.Join(", ", x.shape)}] and {o} outputs.");
            if (frozenColumns < 0 || frozenColumns > a.shape[0])
                throw new ArgumentOutOfRangeException(nameof(frozenColumns), frozenColumns, $"between 0 and the rank {a.shape[0]}");
            return x.numel() / Math.Max(1, d);
        }

        internal sealed record Args(double Scaling, double Dropout, ulong Seed, int FrozenColumns, long Rows, long[] InputShape, long[] PreviousShape,
            bool NeedInput, bool NeedPrevious, bool NeedS, bool NeedB);
    }
}
