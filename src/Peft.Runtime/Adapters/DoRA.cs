using System;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// The magnitude vector m [out] of one DoRA adapter: PEFT's <c>DoraLinearLayer</c>, a module whose one parameter
    /// is <c>weight</c>, kept in the layer's <c>lora_magnitude_vector</c> dictionary, so its in-memory name is
    /// <c>lora_magnitude_vector.&lt;adapter&gt;.weight</c> (saved, as PEFT saves it, as <c>lora_magnitude_vector</c>).
    /// </summary>
    public sealed class DoRAMagnitude : nn.Module
    {
        /// <summary>Holds <paramref name="initial"/> ([out]) as the trainable magnitude.</summary>
        public DoRAMagnitude(Tensor initial) : base("DoraLinearLayer")
        {
            Weight = new Parameter(initial, requires_grad: true);
            register_parameter("weight", Weight);
        }

        /// <summary>The magnitude m, one entry per output row.</summary>
        public Parameter Weight { get; }

        /// <inheritdoc />
        protected override void RegisterComponents() { } // registered explicitly, by PEFT's name
    }

    /// <summary>
    /// The options of one DoRA adapter, as <c>[DoRA]</c> declares them (the same defaults): LoRA's, since DoRA adds only
    /// the magnitude vector, which has no hyper-parameters; written to PEFT's <c>LoraConfig</c> with <c>use_dora: true</c>.
    /// The magnitude starts at the row norms of W + s·B·A once A and B have started as <see cref="LoRAOptions.Init"/> says.
    /// </summary>
    public sealed record DoRAOptions : LoRAOptions
    {
        /// <inheritdoc />
        public override bool UseDora => true;
    }

    /// <summary>
    /// The entry point generated code calls for <c>[DoRA]</c>, and DoRA's math (Liu et al., 2024). A DoRA adapter is a
    /// mode of <see cref="LoRALinear"/>, as in PEFT (a LoRA adapter with a magnitude vector), so LoRA and DoRA adapters
    /// share one layer.
    /// </summary>
    /// <remarks>
    /// With ΔW = s·B·A, n = ‖W + ΔW‖ per output row (no gradient) and g = m / n, the layer computes
    /// y = g ⊙ (xWᵀ + ΔW·x) + b and its merged weight is g[:, None] ⊙ (W + ΔW). A row of W + ΔW that is exactly zero
    /// (n = 0) has no direction to rescale: there g = 1, so that row passes through as in plain LoRA, where PEFT
    /// divides by zero and produces NaN.
    /// </remarks>
    public static class DoRA
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="LoRALinear"/> with DoRA adapter <paramref name="adapter"/>, or
        /// adds the adapter to it if it already is one (a LoRA or DoRA layer). Checks the rank against the layer's
        /// real shape, with the analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="LoRALinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, DoRAOptions options) =>
            AdapterWrap.Linear<LoRALinear>(layer, site, "DoRA", existing => existing.AddAdapter(adapter, options), linear => new LoRALinear(site, linear, adapter, options));

        /// <summary>The L2 norm of each row of <paramref name="weight"/> ([out, in] → [out]), as PEFT's <c>get_weight_norm</c>.</summary>
        public static Tensor RowNorm(Tensor weight) => linalg.vector_norm(weight, 2, new long[] { 1 });

        /// <summary>
        /// The rescaling g = m / n, with g = 1 where n = 0 (a zero row of W + ΔW). <paramref name="norm"/> is treated as
        /// a constant; the gradient reaches <paramref name="magnitude"/> only where n &gt; 0.
        /// </summary>
        public static Tensor Factor(Tensor magnitude, Tensor norm)
        {
            using var scope = NewDisposeScope();
            var n = norm.detach();
            var zero = n.eq(0);
            var safe = where(zero, ones_like(n), n); // never divide by zero, so no NaN reaches the gradient either
            return where(zero, ones_like(magnitude), magnitude.div(safe)).MoveToOuterDisposeScope();
        }

        /// <summary>
        /// What a DoRA adapter adds to the base layer's output: (g − 1) ⊙ xWᵀ + g ⊙ s·B·A·x, where
        /// <paramref name="projected"/> is xWᵀ (no bias) and <paramref name="update"/> is B·A·x, both on the same
        /// (possibly dropped-out) input.
        /// </summary>
        public static Tensor OutputTerm(Tensor factor, Tensor projected, Tensor update, double scaling)
        {
            using var scope = NewDisposeScope();
            return factor.sub(1).mul(projected).add(factor.mul(update), alpha: scaling).MoveToOuterDisposeScope();
        }

        /// <summary>What a merge did to a weight, kept so that unmerge can undo it exactly.</summary>
        internal sealed class MergeRecord : IDisposable
        {
            public MergeRecord(Tensor factor, Tensor? lostRowIndex, Tensor? lostRows)
            {
                Factor = factor;
                LostRowIndex = lostRowIndex;
                LostRows = lostRows;
            }

            /// <summary>The factor g applied to each row.</summary>
            public Tensor Factor { get; }

            /// <summary>Rows where g was 0 (m = 0): the merge erased them, so they are kept.</summary>
            public Tensor? LostRowIndex { get; }

            /// <summary>W + ΔW on those rows.</summary>
            public Tensor? LostRows { get; }

            public void Dispose()
            {
                Factor.Dispose();
                LostRowIndex?.Dispose();
                LostRows?.Dispose();
            }
        }

        /// <summary>
        /// Merges in place: W ← g[:, None] ⊙ (W + ΔW), with n computed from this W. Returns what unmerge needs
        /// (g itself, and the rows a zero magnitude erases), detached from any dispose scope.
        /// </summary>
        internal static MergeRecord MergeInPlace(Tensor weight, Tensor delta, Tensor magnitude)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var combined = weight.add(delta.to(weight.dtype));
            var factor = Factor(magnitude.detach().to(weight.dtype), RowNorm(combined));
            var lost = factor.eq(0).nonzero().squeeze(1);
            Tensor? lostIndex = null, lostRows = null;
            if (lost.numel() > 0)
            {
                lostIndex = lost.DetachFromDisposeScope();
                lostRows = combined.index_select(0, lostIndex).DetachFromDisposeScope();
            }
            weight.copy_(combined.mul(factor.unsqueeze(1)));
            return new MergeRecord(factor.DetachFromDisposeScope(), lostIndex, lostRows);
        }

        /// <summary>Undoes <see cref="MergeInPlace"/>: W ← W' / g[:, None] − ΔW (with the erased rows restored).</summary>
        internal static void UnmergeInPlace(Tensor weight, Tensor delta, MergeRecord record)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var d = delta.to(weight.dtype);
            var factor = where(record.Factor.eq(0), ones_like(record.Factor), record.Factor);
            weight.div_(factor.unsqueeze(1)).sub_(d);
            if (record.LostRowIndex is not null)
                weight.index_copy_(0, record.LostRowIndex, record.LostRows!.sub(d.index_select(0, record.LostRowIndex)));
        }
    }
}
