using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// LoLDU on a <c>Linear</c> layer: with W = P·L·diag(d)·U (LU with partial pivoting, U scaled to a unit diagonal),
    /// y = xWᵀ + b + ((drop(x)·U_rᵀ) ⊙ (z − z₀))·(P·L_r)ᵀ, where z (<c>vector_z.&lt;adapter&gt;</c>, [r]) trains and starts at
    /// z₀ = d[:r], and P·L_r ([out, r]) and U_r ([r, in]) are frozen (buffers of <c>loldu_factors.&lt;adapter&gt;</c>).
    /// </summary>
    /// <remarks>
    /// <para>The paper's code replaces the base weight by the residual W − P·L_r·diag(z₀)·U_r and adds P·L_r·diag(z)·U_r;
    /// this layer keeps W and adds P·L_r·diag(z − z₀)·U_r, the same function of z with the same gradients, so that the
    /// base layer stays the model's own: a disabled adapter, a <c>__base__</c> row of a mixed batch and another adapter
    /// on the layer see W, not a residual, and the file is a LoRA on the original W with nothing to convert.</para>
    /// <para>P is applied once, when the adapter is made, as a row gather of L_r: forward never touches an out×out
    /// permutation, and is two thin products.</para>
    /// <para>Saved as exactly a LoRA: <c>lora_A</c> = U_r, <c>lora_B</c> = P·L_r·diag(z − z₀), r and <c>lora_alpha</c> = r
    /// (scaling 1). A LoRA file loads into a LoLDU adapter only if it has that form for this layer's W: <c>lora_A</c> equal
    /// to U_r and each column of s·<c>lora_B</c> a multiple c_k of P·L_r's; then z = z₀ + c. Any other LoRA is refused,
    /// naming the layer (load it into a <c>[LoRA]</c> adapter).</para>
    /// </remarks>
    public sealed class LoLDULinear : AdapterLayerBase<LoLDUOptions>, IFileTensorLayout
    {
        private readonly AdapterParameterDict vector_z = new();
        private readonly AdapterModuleDict<LoLDUFactors> loldu_factors = new(); // frozen: not an adapter dict

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public LoLDULinear(string site, Linear baseLayer, string adapter, LoLDUOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(vector_z), vector_z);
            register_module(nameof(loldu_factors), loldu_factors);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <summary>The trainable pivots z of an adapter ([r]).</summary>
        public Parameter Z(string adapter) => vector_z[adapter];

        /// <summary>z₀, the pivots W's LU decomposition gives ([r]).</summary>
        public Tensor InitialZ(string adapter) => loldu_factors[adapter].Pivots;

        /// <summary>P·L_r: the first r columns of L with P's rows applied ([out, r]).</summary>
        public Tensor PermutedLower(string adapter) => loldu_factors[adapter].Lower;

        /// <summary>U_r: the first r rows of U, unit diagonal ([r, in]).</summary>
        public Tensor Upper(string adapter) => loldu_factors[adapter].Upper;

        /// <summary>Adds a named adapter from the LU decomposition of the (unmerged) base weight; checked against the layer first.</summary>
        public void AddAdapter(string adapter, LoLDUOptions options)
        {
            LoLDU.Validate(Site, options, InFeatures, OutFeatures);
            var weight = BaseWeight;
            Tensor lower, upper, pivots;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                (lower, upper, pivots) = LoLDU.Decompose(Site, OriginalWeight(), options.Rank);
                lower = lower.to(weight.dtype).MoveToOuterDisposeScope();
                upper = upper.to(weight.dtype).MoveToOuterDisposeScope();
                pivots = pivots.to(weight.dtype).MoveToOuterDisposeScope();
            }
            var factors = new LoLDUFactors(lower, upper, pivots);
            try
            {
                RegisterAdapter(adapter, options); // the last check: nothing below fails
            }
            catch
            {
                factors.Dispose();
                throw;
            }
            loldu_factors.Add(adapter, factors);
            vector_z.Add(adapter, new Parameter(pivots.detach().clone()));
        }

        /// <summary>The base output plus, per active unmerged adapter, ((drop(x)·U_rᵀ) ⊙ (z − z₀))·(P·L_r)ᵀ.</summary>
        protected override Tensor ForwardActive(Tensor input)
        {
            var result = BaseLayer.forward(input);
            foreach (var adapter in UnmergedActiveAdapters)
            {
                var options = OptionsOf(adapter);
                var x = options.Dropout > 0 && training ? nn.functional.dropout(input, options.Dropout, training: true) : input;
                var h = nn.functional.linear(x, Upper(adapter)).mul(Z(adapter).sub(InitialZ(adapter)));
                result = result.add(nn.functional.linear(h, PermutedLower(adapter)));
            }
            return result;
        }

        /// <summary>P·L_r·diag(z − z₀)·U_r ([out, in]).</summary>
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            return PermutedLower(adapter).mul(Z(adapter).sub(InitialZ(adapter))).matmul(Upper(adapter));
        }

        /// <summary>The LoRA the adapter is: <c>lora_A</c> = U_r, <c>lora_B</c> = P·L_r·diag(z − z₀).</summary>
        private IReadOnlyList<(string Name, Tensor Tensor)> LoRAFactors(string adapter)
        {
            RequireAdapter(adapter);
            using var _ = no_grad();
            return PlainLoRAFile.Tensors(adapter, Upper(adapter).detach().clone(), PermutedLower(adapter).mul(Z(adapter).sub(InitialZ(adapter))).detach());
        }

        /// <summary>Relative tolerance for a file's factors against this layer's (float32 LU, written and read back).</summary>
        private const double FileTolerance = 1e-4;

        /// <inheritdoc />
        public (IReadOnlyList<(string Name, Tensor Tensor)> Tensors, AdapterSettings Settings) ForFile(string adapter) => (LoRAFactors(adapter), Settings(adapter));

        /// <inheritdoc />
        public IReadOnlyList<(string Name, long[] Shape)> FileShapes(string adapter, AdapterSettings fileSettings) =>
            PlainLoRAFile.Shapes(adapter, OptionsOf(adapter).Rank, InFeatures, OutFeatures);

        /// <summary>
        /// A LoRA file's factors, if they are a LoLDU update of this layer's W: <c>lora_A</c> = U_r and s·<c>lora_B</c> =
        /// P·L_r·diag(c); then z = z₀ + c. Otherwise refused, naming the layer.
        /// </summary>
        public IReadOnlyList<(Tensor Target, Tensor Source)> FromFile(string adapter, AdapterSettings settings, IReadOnlyDictionary<string, Tensor> fileTensors)
        {
            double scaling = ((LoRAOptions)settings).Scaling; // ValidateSettings accepted a plain LoRA
            Tensor z;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var upper = Upper(adapter).to(float64);
                var lower = PermutedLower(adapter).to(float64);
                var a = fileTensors[PlainLoRAFile.KeyA(adapter)].to(float64, upper.device);
                var b = fileTensors[PlainLoRAFile.KeyB(adapter)].to(float64, upper.device).mul(scaling);
                double aError = a.sub(upper).abs().max().item<double>(), aSize = upper.abs().max().item<double>();
                if (!(aError <= FileTolerance * (1 + aSize)))
                    throw new InvalidOperationException(
                        $"{Site}: adapter '{adapter}' is a LoLDU adapter; the file's lora_A is not this layer's U_r (max difference {aError:G3}), so its LoRA is no LoLDU update of this layer's weight; load it into a [LoRA] adapter");
                var c = lower.mul(b).sum(dim: 0).div(lower.square().sum(dim: 0)); // least squares per column
                double bError = lower.mul(c).sub(b).abs().max().item<double>(), bSize = b.abs().max().item<double>();
                if (!(bError <= FileTolerance * (1e-6 + bSize)))
                    throw new InvalidOperationException(
                        $"{Site}: adapter '{adapter}' is a LoLDU adapter; the file's lora_B is not P·L_r·diag(c) for this layer's weight (max difference {bError:G3}), so its LoRA is no LoLDU update; load it into a [LoRA] adapter");
                z = InitialZ(adapter).to(float64).add(c).to(Z(adapter).dtype).MoveToOuterDisposeScope();
            }
            return new[] { ((Tensor)Z(adapter), z) };
        }

        /// <summary>
        /// Checks that a file's settings fit: a plain LoRA (no DoRA, an init that left the base weight alone) of the same
        /// rank (its scaling, α / r or rsLoRA's α / √r, may differ: <see cref="FromFile"/> reads <c>lora_B</c> with it).
        /// </summary>
        public override void ValidateSettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            var lora = PlainLoRAFile.Require(Site, adapter, "LoLDU", settings);
            PlainLoRAFile.RequireOnBaseWeight(Site, adapter, "LoLDU", lora, current.Rank);
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            ValidateSettings(adapter, settings);
            SetOptions(adapter, OptionsOf(adapter) with { Dropout = ((LoRAOptions)settings).Dropout });
        }

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            loldu_factors.Remove(adapter);
        }
    }

    /// <summary>One LoLDU adapter's frozen factors, as buffers (they follow the module to another device or dtype; never saved in its state).</summary>
    public sealed class LoLDUFactors : nn.Module
    {
        /// <summary>Holds P·L_r [out, r], U_r [r, in] and z₀ [r].</summary>
        public LoLDUFactors(Tensor lower, Tensor upper, Tensor pivots) : base(nameof(LoLDUFactors))
        {
            register_buffer("lower", lower, persistent: false);
            register_buffer("upper", upper, persistent: false);
            register_buffer("pivots", pivots, persistent: false);
        }

        /// <summary>P·L_r ([out, r]).</summary>
        public Tensor Lower => get_buffer("lower")!;

        /// <summary>U_r ([r, in]), unit diagonal.</summary>
        public Tensor Upper => get_buffer("upper")!;

        /// <summary>z₀ ([r]).</summary>
        public Tensor Pivots => get_buffer("pivots")!;

        /// <inheritdoc />
        protected override void RegisterComponents() { }
    }

    /// <summary>The entry point generated code calls for <c>[LoLDU]</c>.</summary>
    public static class LoLDU
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="LoLDULinear"/> with adapter <paramref name="adapter"/>, or adds the
        /// adapter to it if it already is one. Checks the options against the layer's real shape, with the analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="LoLDULinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, LoLDUOptions options) =>
            AdapterWrap.Linear<LoLDULinear>(layer, site, "LoLDU", existing => existing.AddAdapter(adapter, options), linear => new LoLDULinear(site, linear, adapter, options));

        internal static void Validate(string site, LoLDUOptions options, long inFeatures, long outFeatures)
        {
            AdapterChecks.RankWithinLayer(site, "LoLDU", options.Rank, inFeatures, outFeatures);
            AdapterChecks.Dropout(site, options.Dropout);
        }

        /// <summary>
        /// W's rank-r LU part, from <c>linalg.lu</c> (float32, or float64 for a float64 W; W = P·L·U): P·L_r ([out, r], the
        /// rows of L_r gathered in P's order), U_r ([r, in], rows divided by their pivots so its diagonal is 1) and z₀ = the
        /// first r pivots of U. P is read once here, as the row each output row takes; forward never sees it. A zero pivot
        /// among the first r is refused, naming the site (<c>lu_factor</c> would refuse a zero pivot anywhere, even beyond r).
        /// </summary>
        internal static (Tensor PermutedLower, Tensor Upper, Tensor Pivots) Decompose(string site, Tensor weight, int rank)
        {
            var w = weight.dtype == ScalarType.Float64 ? weight.detach() : weight.detach().to(ScalarType.Float32);
            var (p, l, u) = linalg.lu(w);
            var d = u.diagonal().narrow(0, 0, rank).clone();
            var zero = d.eq(0).nonzero();
            if (zero.shape[0] > 0)
                throw new ArgumentException(
                    $"{site}: LoLDU rank {rank} needs {rank} nonzero pivots in the base weight's LU decomposition, but pivot {zero[0, 0].item<long>()} is 0 (the weight is rank-deficient there); use a smaller rank");
            var rows = p.argmax(1); // (P·L)[i] = L[rows[i]]: P has one 1 per row
            var permuted = l.narrow(1, 0, rank).index_select(0, rows);
            var upper = u.narrow(0, 0, rank).div(d.unsqueeze(1));
            return (permuted, upper, d);
        }
    }

    /// <summary>
    /// The options of one LoLDU adapter, as <c>[LoLDU]</c> declares them (the same defaults). Its file is a plain LoRA on
    /// the original W, so its config entry is <c>LoraConfig</c>'s, with <c>lora_alpha</c> = r (scaling 1).
    /// </summary>
    public sealed record LoLDUOptions : AdapterSettings
    {
        /// <summary>How many pivots train (the saved LoRA's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>Dropout probability on the adapter input (the saved LoRA's <c>lora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <inheritdoc />
        public override IReadOnlyDictionary<string, double> PerLayerFields => AsLoRA.PerLayerFields;

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config) => AsLoRA.WriteSharedFields(config);

        /// <summary>The plain LoRA the adapter's file describes: r = Rank, lora_alpha = Rank.</summary>
        private LoRAOptions AsLoRA => new() { Rank = Rank, Alpha = Rank, Dropout = Dropout };
    }
}
