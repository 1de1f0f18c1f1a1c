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
    /// VeRA on a <c>Linear</c> layer: y = xWᵀ + b + λ_b ⊙ ((λ_d ⊙ (dropout(x)·A[:, :in]ᵀ))·B[:out]ᵀ), with PEFT's
    /// trainable parameter dicts <c>vera_lambda_b.&lt;adapter&gt;</c> [out] and <c>vera_lambda_d.&lt;adapter&gt;</c> [r] and
    /// the frozen, shared buffers <c>vera_A.&lt;adapter&gt;</c> [r, in_max] and <c>vera_B.&lt;adapter&gt;</c> [out_max, r].
    /// </summary>
    /// <remarks>
    /// A layer on its own draws projections of its own size from the seed. When the model is attached
    /// (<see cref="IModelAwareAdapter"/>), every VeRA layer of an adapter is given the same projections, drawn at the
    /// largest in- and out-size among them, so each layer's slices equal PEFT's. The projections are saved once for
    /// the model, as <c>base_model.vera_A</c> and <c>base_model.vera_B</c> (<see cref="ISharedAdapterTensors"/>).
    /// </remarks>
    public sealed class VeRALinear : AdapterLayerBase<VeRAOptions>, IModelAwareAdapter, ISharedAdapterTensors
    {
        private readonly AdapterParameterDict vera_lambda_b = new();
        private readonly AdapterParameterDict vera_lambda_d = new();
        private readonly SharedTensorPair _proj;

        /// <summary>PEFT's <c>d_initial</c>: the value λ_d starts at.</summary>
        public const double InitialLambdaD = 0.1;

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public VeRALinear(string site, Linear baseLayer, string adapter, VeRAOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(vera_lambda_b), vera_lambda_b);
            RegisterAdapterDict(nameof(vera_lambda_d), vera_lambda_d);
            _proj = new SharedTensorPair(this, "vera_A", "vera_B");
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "VERA";

        /// <summary>λ_b of an adapter ([out]); starts at zero.</summary>
        public Parameter LambdaB(string adapter) => vera_lambda_b[adapter];

        /// <summary>λ_d of an adapter ([r]); starts at the options' <see cref="VeRAOptions.InitialLambdaD"/> (PEFT's <c>d_initial</c>, 0.1 by default).</summary>
        public Parameter LambdaD(string adapter) => vera_lambda_d[adapter];

        /// <summary>The frozen projection A of an adapter: [r, in_max] once the model is attached, [r, in] before.</summary>
        public Tensor ProjectionA(string adapter) => _proj.A[adapter];

        /// <summary>The frozen projection B of an adapter: [out_max, r] once the model is attached, [out, r] before.</summary>
        public Tensor ProjectionB(string adapter) => _proj.B[adapter];

        internal SharedTensorPair Projections => _proj;

        /// <summary>Adds a named adapter with projections of this layer's own size drawn from its seed.</summary>
        public void AddAdapter(string adapter, VeRAOptions options)
        {
            VeRA.Validate(Site, options);
            RegisterAdapter(adapter, options);
            var weight = BaseWeight;
            var lambdaB = new Parameter(zeros(OutFeatures, dtype: weight.dtype, device: weight.device));
            var lambdaD = new Parameter(full(options.Rank, options.InitialLambdaD, dtype: weight.dtype, device: weight.device));
            vera_lambda_b.Add(adapter, lambdaB);
            vera_lambda_d.Add(adapter, lambdaD);
            var (a, b) = VeRAProjections.Draw(options.ProjectionSeed, options.Rank, InFeatures, OutFeatures);
            // Into this layer's own dictionaries: the next attach (PeftModelCore.Refresh) shares again, at the new sizes.
            _proj.Add(AdapterNames.Where(n => n != adapter), adapter, a.to(weight.dtype, weight.device), b.to(weight.dtype, weight.device));
        }

        /// <inheritdoc />
        public void OnModelAttached(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers) => VeRAProjections.Share(layers);

        /// <inheritdoc />
        public IEnumerable<(string Name, Tensor Tensor)> SharedTensors(string adapter)
        {
            RequireAdapter(adapter);
            return _proj.Named(adapter);
        }

        /// <inheritdoc />
        public bool FileHoldsSharedTensors(AdapterSettings fileSettings) => fileSettings is VeRAOptions { SaveProjection: true };

        private (Tensor A, Tensor B) Sliced(string adapter) =>
            (_proj.A[adapter].narrow(1, 0, InFeatures), _proj.B[adapter].narrow(0, 0, OutFeatures));

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            var result = BaseLayer.forward(input);
            foreach (var adapter in UnmergedActiveAdapters)
            {
                var options = OptionsOf(adapter);
                var (a, b) = Sliced(adapter);
                var x = options.Dropout > 0 && training ? nn.functional.dropout(input, options.Dropout, training: true) : input;
                var hidden = nn.functional.linear(x, a).mul(LambdaD(adapter));
                result = result.add(nn.functional.linear(hidden, b).mul(LambdaB(adapter)));
            }
            return result;
        }

        /// <inheritdoc />
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            var (a, b) = Sliced(adapter);
            return matmul(LambdaB(adapter).unsqueeze(-1).mul(b), LambdaD(adapter).unsqueeze(-1).mul(a));
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            ValidateSettings(adapter, settings);
            var current = Options(adapter);
            var vera = (VeRAOptions)settings;
            // With saved projections the file's replace ours, so its seed is the one that describes them.
            SetOptions(adapter, current with { Dropout = vera.Dropout, ProjectionSeed = vera.ProjectionSeed });
        }

        /// <summary>
        /// A VeRA config of the same rank; without saved projections (<c>save_projection: false</c>), the same
        /// <c>projection_prng_key</c>, since the projections are the model's shared tensors drawn from the declared seed.
        /// </summary>
        public override void ValidateSettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not VeRAOptions vera)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a VeRA adapter; the file describes a {settings.PeftType} adapter");
            if (vera.Rank != current.Rank)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' has rank {current.Rank}; the file has rank {vera.Rank}");
            // Without saved projections PEFT redraws them from the seed; ours were drawn from our seed.
            if (!vera.SaveProjection && vera.ProjectionSeed != current.ProjectionSeed)
                throw new InvalidOperationException(
                    $"{Site}: adapter '{adapter}' draws its projections with seed {current.ProjectionSeed}; the file holds no projections (save_projection: false) and was trained with projection_prng_key {vera.ProjectionSeed}; declare ProjectionSeed = {vera.ProjectionSeed}");
        }

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            // Other layers may use the shared projections: this layer leaves them and keeps its others to itself
            // until the next attach shares again.
            _proj.Remove(AdapterNames, adapter);
        }
    }

    /// <summary>The entry point generated code calls for <c>[VeRA]</c>.</summary>
    public static class VeRA
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="VeRALinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks the options, with the analyzers' wording. The projections
        /// become shared across the model's VeRA layers when the model is attached.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="VeRALinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, VeRAOptions options) =>
            AdapterWrap.Linear<VeRALinear>(layer, site, "VeRA", existing => existing.AddAdapter(adapter, options), linear => new VeRALinear(site, linear, adapter, options));

        internal static void Validate(string site, VeRAOptions options)
        {
            // No upper bound: VeRA's rank routinely exceeds the layer's sizes (only λ_d grows with it).
            AdapterChecks.RankAtLeastOne(site, "VeRA", options.Rank);
            AdapterChecks.Dropout(site, options.Dropout);
        }
    }

    /// <summary>
    /// The options of one VeRA adapter, as <c>[VeRA]</c> declares them (the same defaults), and its entry in PEFT's
    /// <c>VeraConfig</c> (which has no per-layer patterns: one rank for the adapter). With <see cref="SaveProjection"/> false
    /// a save writes no projections, and a load redraws them from <see cref="ProjectionSeed"/>. <see cref="InitialLambdaD"/>
    /// is read from files; <c>[VeRA]</c> leaves it at PEFT's default.
    /// </summary>
    public sealed record VeRAOptions : AdapterSettings
    {
        /// <summary>The rank r of the shared projections (PEFT's <c>r</c>; PEFT's default 256).</summary>
        public int Rank { get; init; } = 256;

        /// <summary>Dropout probability on the adapter input (PEFT's <c>vera_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>The seed of the CPU generator that draws the projections (PEFT's <c>projection_prng_key</c>).</summary>
        public int ProjectionSeed { get; init; }

        /// <summary>
        /// PEFT's <c>save_projection</c>: whether saved files hold the projections (<c>base_model.vera_A</c> / <c>vera_B</c>);
        /// without them they are redrawn from the seed on load.
        /// </summary>
        public bool SaveProjection { get; init; } = true;

        /// <summary>PEFT's <c>d_initial</c>, the value λ_d starts at.</summary>
        public double InitialLambdaD { get; init; } = VeRALinear.InitialLambdaD;

        /// <inheritdoc />
        public override string PeftType => "VERA";

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["r"] = Rank;
            config["projection_prng_key"] = ProjectionSeed;
            config["save_projection"] = SaveProjection;
            config["vera_dropout"] = AdapterConfig.Float(Dropout);
            config["d_initial"] = AdapterConfig.Float(InitialLambdaD);
            config["fan_in_fan_out"] = false;
            config["bias"] = "none";
        }

        /// <summary>Reads the fields of a VeRA config (PEFT's defaults: r = 256, projection_prng_key = 0, save_projection = true).</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            int rank = checked((int)AdapterConfig.Number(config, "r", file, fallback: 256));
            int seed = checked((int)AdapterConfig.Number(config, "projection_prng_key", file, fallback: 0));
            bool save = config["save_projection"]?.GetValue<bool>() ?? true;
            double dropout = AdapterConfig.Probability(config, "vera_dropout", file);
            double dInitial = AdapterConfig.Number(config, "d_initial", file, fallback: VeRALinear.InitialLambdaD);
            return new VeRAOptions { Rank = rank, ProjectionSeed = seed, SaveProjection = save, Dropout = dropout, InitialLambdaD = dInitial };
        }
    }
}
