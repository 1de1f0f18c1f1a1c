using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// RandLoRA on a <c>Linear</c> layer, exactly as PEFT computes it. With min = min(in, out), max = max(in, out),
    /// n = ⌈min / r⌉ and s = α / r: trainable <c>randlora_lambda.&lt;adapter&gt;</c> [r, n] and
    /// <c>randlora_gamma.&lt;adapter&gt;</c> [n, min]; frozen bases shared by the adapter's layers,
    /// <c>randlora_A.&lt;adapter&gt;</c> [r, 1, D_min] and <c>randlora_B.&lt;adapter&gt;</c> [D_max, N, r].
    /// Ã[i·n + j, c] = λ[i, j]·A[i, 0, c]·γ[j, c] (rank-major, [r·n, min]) and B̃ = B[:max, :n, :] flattened basis-major
    /// ([max, n·r]): ΔW = s·B̃·Ã when in ≤ out, s·Ãᵀ·B̃ᵀ when in &gt; out.
    /// </summary>
    /// <remarks>
    /// A layer on its own draws bases of its own size. When the model is attached every RandLoRA layer of an adapter is
    /// given the same bases, drawn at the largest in- and out-size among them as PEFT's <c>_find_dim</c> does, so each
    /// layer's slices equal PEFT's. The bases are frozen buffers: autograd yields only ∂λ and ∂γ.
    /// </remarks>
    public sealed class RandLoRALinear : AdapterLayerBase<RandLoRAOptions>, IModelAwareAdapter, ISharedAdapterTensors
    {
        private readonly AdapterParameterDict randlora_lambda = new();
        private readonly AdapterParameterDict randlora_gamma = new();
        private readonly SharedTensorPair _bases;

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public RandLoRALinear(string site, Linear baseLayer, string adapter, RandLoRAOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(randlora_lambda), randlora_lambda);
            RegisterAdapterDict(nameof(randlora_gamma), randlora_gamma);
            _bases = new SharedTensorPair(this, "randlora_A", "randlora_B");
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "RANDLORA";

        /// <summary>min(in, out): the side γ scales.</summary>
        public long MinDim => Math.Min(InFeatures, OutFeatures);

        /// <summary>max(in, out): the side the B bases span.</summary>
        public long MaxDim => Math.Max(InFeatures, OutFeatures);

        /// <summary>The number of bases n = ⌈min(in, out) / r⌉ of an adapter (full rank).</summary>
        public long NumBases(string adapter) => RandLoRABases.Count(MinDim, OptionsOf(adapter).Rank);

        /// <summary>λ of an adapter ([r, n]); starts at zero.</summary>
        public Parameter Lambda(string adapter) => randlora_lambda[adapter];

        /// <summary>γ of an adapter ([n, min]); starts at 1 / max(n, min).</summary>
        public Parameter Gamma(string adapter) => randlora_gamma[adapter];

        /// <summary>The frozen basis A of an adapter, [r, 1, D_min].</summary>
        public Tensor BasisA(string adapter) => _bases.A[adapter];

        /// <summary>The frozen bases B of an adapter, [D_max, N, r].</summary>
        public Tensor BasisB(string adapter) => _bases.B[adapter];

        internal SharedTensorPair Bases => _bases;

        /// <summary>Adds a named adapter with bases of this layer's own size drawn from its seed.</summary>
        public void AddAdapter(string adapter, RandLoRAOptions options)
        {
            RandLoRA.Validate(Site, options);
            RegisterAdapter(adapter, options);
            var weight = BaseWeight;
            long nb = RandLoRABases.Count(MinDim, options.Rank);
            randlora_lambda.Add(adapter, new Parameter(zeros(options.Rank, nb, dtype: weight.dtype, device: weight.device)));
            randlora_gamma.Add(adapter, new Parameter(full(nb, MinDim, 1.0 / Math.Max(nb, MinDim), dtype: weight.dtype, device: weight.device)));
            var (a, b) = RandLoRABases.Draw(options.ProjectionSeed, options.Rank, MinDim, MaxDim);
            // Into this layer's own dictionaries: the next attach shares again, at the new sizes.
            _bases.Add(AdapterNames.Where(n => n != adapter), adapter, a.to(weight.dtype, weight.device), b.to(weight.dtype, weight.device));
        }

        /// <inheritdoc />
        public void OnModelAttached(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers) => RandLoRABases.Share(layers);

        /// <inheritdoc />
        public IEnumerable<(string Name, Tensor Tensor)> SharedTensors(string adapter)
        {
            RequireAdapter(adapter);
            return _bases.Named(adapter);
        }

        /// <inheritdoc />
        public bool FileHoldsSharedTensors(AdapterSettings fileSettings) => fileSettings is RandLoRAOptions { SaveProjection: true };

        /// <summary>PEFT's files hold the bases twice: once for the model and once under every layer's path.</summary>
        public bool SharedTensorsAlsoPerLayer => true;

        /// <summary>
        /// Ã [r·n, min] (row i·n + j = λ[i, j]·A[i, 0, :min]·γ[j]) and B̃ [max, n·r] (column j·r + i = B[:max, j, i]) of an adapter.
        /// </summary>
        internal (Tensor ScaledA, Tensor FlatB) ScaledBases(string adapter)
        {
            var options = OptionsOf(adapter);
            long nb = NumBases(adapter);
            var a = _bases.A[adapter].narrow(2, 0, MinDim); // [r, 1, min]
            var b = _bases.B[adapter].narrow(0, 0, MaxDim).narrow(1, 0, nb); // [max, n, r]
            var scaled = Lambda(adapter).unsqueeze(-1).mul(a).mul(Gamma(adapter).unsqueeze(0)); // [r, n, min]
            return (scaled.reshape(options.Rank * nb, MinDim), b.reshape(MaxDim, nb * options.Rank));
        }

        internal double Scaling(string adapter) => OptionsOf(adapter).Alpha / OptionsOf(adapter).Rank;

        /// <summary>
        /// Whether the forward forms ΔW and runs one GEMM with W + ΔW (true), or goes through the bottleneck (false);
        /// null (the default) chooses by size, <see cref="FormsDelta(long, long, long, long)"/>. For tests and benchmarks.
        /// </summary>
        internal bool? FormDelta { get; set; }

        /// <summary>
        /// Whether forming ΔW once per step costs fewer multiply-adds than the factored product for
        /// <paramref name="tokens"/> rows through a layer of <paramref name="inFeatures"/> × <paramref name="outFeatures"/>
        /// with a bottleneck of width k = r·n (forward and backward, the input needing its gradient): factored, about
        /// 3·N·k·(in + out) (two GEMMs forward, four backward); formed, 2·in·out·k (ΔW = B̃·Ã, and ∂Ã = B̃ᵀ·∂ΔW) plus
        /// N·in·out (∂ΔW = Gᵀ·x), the GEMM with W + ΔW and its input gradient replacing the base layer's own.
        /// At n = 2048, d = 1024, r = 16 forming measured 1.65× faster, at N = 256 the factored product 1.27× (benchmarks/README.md).
        /// </summary>
        internal static bool FormsDelta(long tokens, long inFeatures, long outFeatures, long k) =>
            2.0 * inFeatures * outFeatures * k + (double)tokens * inFeatures * outFeatures < 3.0 * tokens * k * (inFeatures + outFeatures);

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            long tokens = input.numel() / InFeatures;
            Tensor? weight = null;
            var factored = new List<string>();
            foreach (var adapter in UnmergedActiveAdapters)
            {
                var options = OptionsOf(adapter);
                bool dropping = options.Dropout > 0 && training; // the adapter then sees another input than W
                if (!dropping && (FormDelta ?? FormsDelta(tokens, InFeatures, OutFeatures, options.Rank * NumBases(adapter))))
                    weight = (weight ?? BaseWeight).add(DeltaWeight(adapter));
                else
                    factored.Add(adapter);
            }
            var result = weight is null ? BaseLayer.forward(input) : nn.functional.linear(input, weight, BaseBias);
            foreach (var adapter in factored)
            {
                var options = OptionsOf(adapter);
                var (scaledA, flatB) = ScaledBases(adapter);
                var x = options.Dropout > 0 && training ? nn.functional.dropout(input, options.Dropout, training: true) : input;
                var update = InFeatures <= OutFeatures
                    ? nn.functional.linear(nn.functional.linear(x, scaledA), flatB) // (x·Ãᵀ)·B̃ᵀ
                    : matmul(matmul(x, flatB), scaledA); // (x·B̃)·Ã
                result = result.add(update, Scaling(adapter));
            }
            return result;
        }

        /// <inheritdoc />
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            var (scaledA, flatB) = ScaledBases(adapter);
            var delta = InFeatures <= OutFeatures ? matmul(flatB, scaledA) : matmul(scaledA.t(), flatB.t());
            return delta.mul(Scaling(adapter));
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            ValidateSettings(adapter, settings);
            var file = (RandLoRAOptions)settings;
            // With saved bases the file's replace ours, so its seed and kind describe them.
            SetOptions(adapter, Options(adapter) with
            {
                Alpha = file.Alpha, Dropout = file.Dropout, ProjectionSeed = file.ProjectionSeed, Sparse = file.Sparse, VerySparse = file.VerySparse,
            });
        }

        /// <summary>
        /// A RandLoRA config of the same rank; without saved bases (<c>save_projection: false</c>), dense bases from the same
        /// <c>projection_prng_key</c>, since the bases are then the ones drawn from the declared seed.
        /// </summary>
        public override void ValidateSettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not RandLoRAOptions file)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a RandLoRA adapter; the file describes a {settings.PeftType} adapter");
            if (file.Rank != current.Rank)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' has rank {current.Rank}; the file has rank {file.Rank}");
            if (file.SaveProjection) return;
            if (file.Sparse || file.VerySparse)
                throw new InvalidOperationException(
                    $"{Site}: adapter '{adapter}': the file holds no bases (save_projection: false) and its bases are {(file.VerySparse ? "very_sparse" : "sparse")}, which PeftDsl does not draw; save it from PEFT with save_projection: true");
            if (file.ProjectionSeed != current.ProjectionSeed)
                throw new InvalidOperationException(
                    $"{Site}: adapter '{adapter}' draws its bases with seed {current.ProjectionSeed}; the file holds no bases (save_projection: false) and was trained with projection_prng_key {file.ProjectionSeed}; declare ProjectionSeed = {file.ProjectionSeed}");
        }

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            _bases.Remove(AdapterNames, adapter);
        }
    }

    /// <summary>How RandLoRA draws its bases and shares them across the layers of a model.</summary>
    public static class RandLoRABases
    {
        /// <summary>⌈minDim / rank⌉, the number of bases that makes the update full rank.</summary>
        public static long Count(long minDim, int rank) => (minDim + rank - 1) / rank;

        /// <summary>
        /// PEFT's dense bases from <c>torch.Generator(device="cpu").manual_seed(projection_prng_key)</c>: A [r, 1, minDim]
        /// drawn first, then ⌈minDim / r⌉ draws of [maxDim, 1, r] concatenated on dimension 1, each with
        /// <c>kaiming_uniform_(a=√5)</c> on a bfloat16 tensor (as PEFT draws them where bf16 is available, which includes every
        /// CPU), each then divided by its own standard deviation in bfloat16. Returned as float32 (exact).
        /// </summary>
        public static (Tensor A, Tensor B) Draw(int seed, int rank, long minDim, long maxDim)
        {
            using var generator = new Generator(unchecked((ulong)(long)seed));
            using (no_grad())
            {
                var a = empty(rank, 1, minDim, dtype: bfloat16).uniform_(-Bound(minDim), Bound(minDim), generator);
                var parts = new List<Tensor>();
                for (long j = 0; j < Count(minDim, rank); j++)
                    parts.Add(empty(maxDim, 1, rank, dtype: bfloat16).uniform_(-Bound(rank), Bound(rank), generator));
                var b = cat(parts, 1);
                return (a.div(a.std()).to(float32), b.div(b.std()).to(float32));
            }
        }

        /// <summary>
        /// <c>kaiming_uniform_(a=√5)</c>'s bound for a fan-in, in Python's order of operations:
        /// gain = √(2 / (1 + a²)), std = gain / √fan_in, bound = √3 · std.
        /// </summary>
        internal static double Bound(long fanIn)
        {
            double a = Math.Sqrt(5);
            double gain = Math.Sqrt(2.0 / (1 + a * a));
            return Math.Sqrt(3.0) * (gain / Math.Sqrt(fanIn));
        }

        /// <summary>
        /// Gives every RandLoRA layer one shared pair of basis dictionaries holding, per adapter, bases sized by the largest
        /// in- and out-size over the adapter's layers (PEFT's <c>_find_dim</c>). An adapter whose layers already share bases
        /// of that size keeps them (drawn before, or loaded); the others are drawn from their seed. Idempotent.
        /// </summary>
        internal static void Share(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers) =>
            SharedTensorPair.Share<RandLoRALinear>(layers, "RandLoRA", "bases", l => l.Bases,
                (layer, first, adapter) =>
                {
                    RandLoRAOptions o = layer.Options(adapter), f = first.Options(adapter);
                    if (o.Rank != f.Rank || o.ProjectionSeed != f.ProjectionSeed)
                        throw new InvalidOperationException(
                            $"{layer.Site}: RandLoRA adapter '{adapter}' has rank {o.Rank} and seed {o.ProjectionSeed}, but its layers share one pair of bases and {first.Site} has rank {f.Rank} and seed {f.ProjectionSeed}");
                },
                (sites, adapter) =>
                {
                    var o = sites[0].Options(adapter);
                    long inMax = sites.Max(s => s.InFeatures), outMax = sites.Max(s => s.OutFeatures);
                    long minDim = Math.Min(inMax, outMax), maxDim = Math.Max(inMax, outMax);
                    return (new[] { (long)o.Rank, 1, minDim }, new[] { maxDim, Count(minDim, o.Rank), (long)o.Rank },
                        () => Draw(o.ProjectionSeed, o.Rank, minDim, maxDim));
                });
    }

    /// <summary>The entry point generated code calls for <c>[RandLoRA]</c>.</summary>
    public static class RandLoRA
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="RandLoRALinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks the options, with the analyzers' wording.
        /// </summary>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, RandLoRAOptions options) =>
            AdapterWrap.Linear<RandLoRALinear>(layer, site, "RandLoRA", existing => existing.AddAdapter(adapter, options), linear => new RandLoRALinear(site, linear, adapter, options));

        internal static void Validate(string site, RandLoRAOptions options)
        {
            // No upper bound: a rank above min(in, out) gives one basis.
            AdapterChecks.RankAtLeastOne(site, "RandLoRA", options.Rank);
            AdapterChecks.Dropout(site, options.Dropout);
            if (double.IsNaN(options.Alpha) || double.IsInfinity(options.Alpha))
                throw new ArgumentException($"{site}: RandLoRA Alpha must be finite, got {options.Alpha}");
        }
    }

    /// <summary>
    /// The options of one RandLoRA adapter, as <c>[RandLoRA]</c> declares them (the same defaults), and its entry in PEFT's
    /// <c>RandLoraConfig</c> (no per-layer patterns). <see cref="Sparse"/> and <see cref="VerySparse"/> are read from files
    /// whose bases they describe; PeftDsl draws dense bases.
    /// </summary>
    public sealed record RandLoRAOptions : AdapterSettings
    {
        /// <summary>The rank r of each basis (PEFT's <c>r</c>; default 32).</summary>
        public int Rank { get; init; } = 32;

        /// <summary>PEFT's <c>randlora_alpha</c>: scaling α / r (default 640).</summary>
        public double Alpha { get; init; } = 640;

        /// <summary>Dropout probability on the adapter input (PEFT's <c>randlora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>The seed of the CPU generator that draws the bases (PEFT's <c>projection_prng_key</c>).</summary>
        public int ProjectionSeed { get; init; }

        /// <summary>PEFT's <c>save_projection</c>: whether files hold the bases.</summary>
        public bool SaveProjection { get; init; } = true;

        /// <summary>PEFT's <c>sparse</c> (ternary bases), as a file states it.</summary>
        public bool Sparse { get; init; }

        /// <summary>PEFT's <c>very_sparse</c>, as a file states it.</summary>
        public bool VerySparse { get; init; }

        /// <inheritdoc />
        public override string PeftType => "RANDLORA";

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["r"] = Rank;
            config["randlora_alpha"] = AdapterConfig.Float(Alpha);
            config["randlora_dropout"] = AdapterConfig.Float(Dropout);
            config["projection_prng_key"] = ProjectionSeed;
            config["save_projection"] = SaveProjection;
            config["sparse"] = Sparse;
            config["very_sparse"] = VerySparse;
            config["init_weights"] = true;
            config["fan_in_fan_out"] = false;
            config["bias"] = "none";
        }

        /// <summary>Reads the fields of a RandLoRA config (PEFT's defaults: r = 32, randlora_alpha = 640, projection_prng_key = 0, save_projection = true).</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            if (config["fan_in_fan_out"]?.GetValue<bool>() == true)
                throw new System.IO.InvalidDataException($"{file}: fan_in_fan_out: true (Conv1D layers) is not supported; PeftDsl's RandLoRA wraps Linear layers");
            return new RandLoRAOptions
            {
                Rank = checked((int)AdapterConfig.Number(config, "r", file, fallback: 32)),
                Alpha = AdapterConfig.Number(config, "randlora_alpha", file, fallback: 640),
                Dropout = AdapterConfig.Probability(config, "randlora_dropout", file),
                ProjectionSeed = checked((int)AdapterConfig.Number(config, "projection_prng_key", file, fallback: 0)),
                SaveProjection = config["save_projection"]?.GetValue<bool>() ?? true,
                Sparse = config["sparse"]?.GetValue<bool>() ?? false,
                VerySparse = config["very_sparse"]?.GetValue<bool>() ?? false,
            };
        }
    }
}
