using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;
using Peft.Runtime.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// Bone (PEFT's MiSS) on a <c>Linear</c> layer, with PEFT's parameter name <c>miss_block.&lt;adapter&gt;</c>
    /// (a parameter dict, so the file key is <c>base_model.model.&lt;path&gt;.miss_block</c>).
    /// <see cref="BoneVariant.Bone"/>: D [r, out], y = xWᵀ + b + (Σₖ x[…, k·r:(k+1)·r])·D.
    /// <see cref="BoneVariant.Bat"/>: D [out/r, r, r], each r × r tile W_IJ of W (I the output block) becomes
    /// W_IJ + W_IJ·D_I + D_I.
    /// </summary>
    /// <remarks>
    /// Several active adapters compose in their active order, the way merging them in that order would: a Bat adapter
    /// acts on the weight as the adapters before it left it. On CPU float32 the forward and backward run as one fused
    /// autograd function (<see cref="BoneFunction"/>) whenever the active adapters are Bone adapters, perhaps after one
    /// Bat adapter: Bone as the base GEMM plus a fold of the input and a thin product, never forming ΔW; Bat by forming
    /// the adapted weight once per step and running one GEMM. Other orders, dtypes and devices, and an unfrozen base,
    /// take the composition of TorchSharp ops (a Bat adapter there builds the adapted weight, as PEFT does).
    /// </remarks>
    public sealed class BoneLinear : AdapterLayerBase<BoneOptions>
    {
        private readonly AdapterParameterDict miss_block = new();

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public BoneLinear(string site, Linear baseLayer, string adapter, BoneOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(miss_block), miss_block);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "MISS";

        /// <summary>The trainable block D of an adapter: [r, out] for Bone, [out/r, r, r] for Bat.</summary>
        public Parameter Block(string adapter)
        {
            RequireAdapter(adapter);
            return miss_block[adapter];
        }

        /// <summary>Adds a named adapter; its block is checked against the layer's shape first.</summary>
        public void AddAdapter(string adapter, BoneOptions options)
        {
            Bone.Validate(Site, options, InFeatures, OutFeatures);
            RegisterAdapter(adapter, options);
            var weight = BaseWeight;
            long r = options.Block;
            long[] shape = options.Variant == BoneVariant.Bat ? new[] { OutFeatures / r, r, r } : new[] { r, OutFeatures };
            miss_block.Add(adapter, new Parameter(zeros(shape, dtype: weight.dtype, device: weight.device), requires_grad: true));
        }

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            var adapters = UnmergedActiveAdapters.ToList();
            // PEFT's miss_dropout acts on the default variant's input in training: the unfused path below applies it.
            bool dropout = training && adapters.Any(a => OptionsOf(a).Variant != BoneVariant.Bat && OptionsOf(a).Dropout > 0);
            if (!dropout && TryFused(input, adapters) is { } fused) return fused;
            if (adapters.Any(a => OptionsOf(a).Variant == BoneVariant.Bat))
            {
                // The adapted weight, built in active order so that it equals merging the adapters in that order.
                Tensor weight = BaseWeight.detach();
                foreach (var adapter in adapters) weight = Apply(weight, adapter);
                return nn.functional.linear(input, weight, BaseBias);
            }
            var result = BaseLayer.forward(input);
            foreach (var adapter in adapters)
            {
                var d = miss_block[adapter];
                long r = d.shape[0];
                double p = OptionsOf(adapter).Dropout;
                var x = training && p > 0 ? nn.functional.dropout(input, p, training: true) : input;
                var folded = x.reshape(input.shape[..^1].Append(InFeatures / r).Append(r).ToArray()).sum(-2);
                result = result.add(folded.matmul(d));
            }
            return result;
        }

        /// <summary>
        /// The forward through <see cref="BoneFunction"/> when it applies: some adapters, all Bone except perhaps a Bat
        /// first (a Bat after another adapter acts on a weight that depends on that adapter's block), and tensors it
        /// fuses (CPU float32, dense, frozen base). Otherwise null, and the composition below runs.
        /// </summary>
        private Tensor? TryFused(Tensor input, List<string> adapters)
        {
            if (adapters.Count == 0) return null;
            bool batFirst = OptionsOf(adapters[0]).Variant == BoneVariant.Bat;
            if (adapters.Skip(1).Any(a => OptionsOf(a).Variant == BoneVariant.Bat))
            {
                FusedKernels.Record(nameof(BoneFunction), $"{Site}: a Bat adapter after another adapter acts on a weight that depends on it");
                return null;
            }
            var bat = batFirst ? miss_block[adapters[0]] : null;
            var bones = adapters.Skip(batFirst ? 1 : 0).Select(a => (Tensor)miss_block[a]).ToArray();
            // As in the composition: a Bat adapter acts on the weight's value (PEFT uses weight.data), a Bone-only
            // forward is the base layer's own, whose weight gets a gradient if it is unfrozen (then nothing fuses).
            using var detached = batFirst ? BaseWeight.detach() : null;
            Tensor weight = detached ?? BaseWeight;
            var bias = BaseBias;
            if (BoneFunction.WhyNotFused(input, weight, bias, bat, bones) is { } why)
            {
                FusedKernels.Record(nameof(BoneFunction), $"{Site}: {why}");
                return null;
            }
            return BoneFunction.Linear(input, weight, bias, bat, bones);
        }

        /// <summary>The weight after adapter <paramref name="adapter"/> acted on <paramref name="weight"/> (differentiable in D).</summary>
        private Tensor Apply(Tensor weight, string adapter)
        {
            var d = miss_block[adapter];
            return OptionsOf(adapter).Variant == BoneVariant.Bat
                ? weight + BatDelta(weight, d)
                : weight + BoneDelta(d, InFeatures);
        }

        /// <summary>ΔW[o, i] = D[i mod r, o] for D [r, out].</summary>
        private static Tensor BoneDelta(Tensor d, long inFeatures) => d.t().repeat(1, inFeatures / d.shape[0]);

        /// <summary>The tiles W_IJ·D_I + D_I of <paramref name="weight"/> [out, in] for D [out/r, r, r], shaped like the weight.</summary>
        private static Tensor BatDelta(Tensor weight, Tensor d)
        {
            long r = d.shape[^1];
            long outBlocks = weight.shape[0] / r, inBlocks = weight.shape[1] / r;
            var tiles = weight.to(d.dtype).reshape(outBlocks, r, inBlocks, r).permute(0, 2, 1, 3); // [I, J, r, r]
            var dI = d.unsqueeze(1);                                                                 // [I, 1, r, r]
            return tiles.matmul(dI).add(dI).permute(0, 2, 1, 3).reshape(weight.shape[0], weight.shape[1]);
        }

        /// <summary>
        /// The change the adapter makes to the base weight, [out, in]. For Bat it depends on the weight it acts on:
        /// this is the change to the base layer's own weight (any merged adapters undone on a copy first).
        /// </summary>
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            var d = miss_block[adapter];
            if (OptionsOf(adapter).Variant != BoneVariant.Bat) return BoneDelta(d, InFeatures);
            using var scope = NewDisposeScope();
            return BatDelta(OriginalWeight(), d).MoveToOuterDisposeScope();
        }

        /// <inheritdoc />
        protected override void MergeInto(Tensor weight, Tensor? bias, string adapter)
        {
            var d = miss_block[adapter].detach();
            if (OptionsOf(adapter).Variant != BoneVariant.Bat)
            {
                weight.add_(BoneDelta(d, InFeatures).to(weight.dtype));
                return;
            }
            // Unmerging needs (I + D_I)⁻¹: refuse a merge that could not be undone.
            var dd = d.to(float64);
            var cond = linalg.cond(eye(dd.shape[^1], dtype: float64, device: dd.device).add(dd));
            double worst = cond.max().item<double>();
            if (!(worst < 1e12))
                throw new InvalidOperationException(
                    $"{Site}: refusing to merge adapter '{adapter}': I + D_I is singular for some output block (condition number {worst:G3}), so the merge could not be undone; the layer is unchanged");
            weight.copy_(weight.to(float64).add(BatDelta(weight.to(float64), dd)).to(weight.dtype));
        }

        /// <inheritdoc />
        protected override void UnmergeFrom(Tensor weight, Tensor? bias, string adapter)
        {
            var d = miss_block[adapter].detach();
            if (OptionsOf(adapter).Variant != BoneVariant.Bat)
            {
                weight.sub_(BoneDelta(d, InFeatures).to(weight.dtype));
                return;
            }
            // W_IJ = (W'_IJ − D_I)·(I + D_I)⁻¹, in float64.
            var dd = d.to(float64);
            long r = dd.shape[^1];
            long outBlocks = OutFeatures / r, inBlocks = InFeatures / r;
            var inverse = linalg.inv(eye(r, dtype: float64, device: dd.device).add(dd)).unsqueeze(1); // [I, 1, r, r]
            var tiles = weight.to(float64).reshape(outBlocks, r, inBlocks, r).permute(0, 2, 1, 3);
            var restored = tiles.sub(dd.unsqueeze(1)).matmul(inverse).permute(0, 2, 1, 3).reshape(OutFeatures, InFeatures);
            weight.copy_(restored.to(weight.dtype));
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not BoneOptions bone)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a Bone (MISS) adapter; the file describes a {settings.PeftType} adapter");
            if (bone.Variant != current.Variant)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is Bone variant {current.Variant}; the file has variant {bone.Variant}");
            if (bone.Block != current.Block)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' has block {current.Block}; the file has block (r) {bone.Block}");
            if (!(bone.Dropout >= 0 && bone.Dropout < 1))
                throw new InvalidOperationException(PeftMessages.Format(PeftMessages.DropoutOutOfRange, Site, bone.Dropout));
            SetOptions(adapter, current with { Dropout = bone.Dropout }); // miss_dropout: the file wins
        }
    }

    /// <summary>The entry point generated code calls for <c>[Bone]</c>.</summary>
    public static class Bone
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="BoneLinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks the block against the layer's real shape, with the
        /// analyzers' wording (PEFT004, PEFT006).
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="BoneLinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.v</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, BoneOptions options) =>
            AdapterWrap.Linear<BoneLinear>(layer, site, "Bone", existing => existing.AddAdapter(adapter, options), linear => new BoneLinear(site, linear, adapter, options));

        internal static void Validate(string site, BoneOptions options, long inFeatures, long outFeatures)
        {
            int r = options.Block;
            if (r < 1)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.BlockTooSmall, site, "Bone", r));
            AdapterChecks.Dropout(site, options.Dropout);
            if (!Enum.IsDefined(options.Variant))
                throw new ArgumentException($"{site}: Bone variant {(int)options.Variant} is not one of {string.Join(", ", Enum.GetNames<BoneVariant>())}");
            if (options.Variant == BoneVariant.Bat)
            {
                if (inFeatures % r != 0 || outFeatures % r != 0)
                    throw new ArgumentException(PeftMessages.Format(PeftMessages.BatBlockDoesNotDivide, site, r, inFeatures, outFeatures,
                        PeftMessages.NearestDivisor(Gcd(inFeatures, outFeatures), r)));
            }
            else if (inFeatures % r != 0)
            {
                throw new ArgumentException(PeftMessages.Format(PeftMessages.BoneBlockDoesNotDivide, site, r, inFeatures, outFeatures,
                    PeftMessages.NearestDivisor(inFeatures, r)));
            }
        }

        private static long Gcd(long a, long b) => b == 0 ? a : Gcd(b, a % b);
    }

    /// <summary>
    /// The options of one Bone (PEFT's MiSS) adapter, as <c>[Bone]</c> declares them (the same defaults), and its entry in
    /// PEFT's <c>MissConfig</c>: <c>r</c> (the block) and <c>init_weights</c> (<c>true</c> for <see cref="BoneVariant.Bone"/>,
    /// <c>"bat"</c> for <see cref="BoneVariant.Bat"/>), and <c>miss_dropout</c> (<see cref="Dropout"/>). PEFT's MiSS has
    /// no per-layer pattern, so all are shared by every layer of the adapter.
    /// </summary>
    public sealed record BoneOptions : AdapterSettings
    {
        /// <summary>The block size r (PEFT's <c>r</c>; PEFT's default is 64).</summary>
        public int Block { get; init; } = 64;

        /// <summary>The form of the update (PEFT's <c>init_weights</c>: <c>true</c> or <c>"bat"</c>).</summary>
        public BoneVariant Variant { get; init; } = BoneVariant.Bone;

        /// <summary>PEFT's <c>miss_dropout</c>: dropout on the input of the default variant's update, in training (none for Bat, as in PEFT).</summary>
        public double Dropout { get; init; }

        /// <inheritdoc />
        public override string PeftType => "MISS";

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["r"] = Block;
            config["init_weights"] = Variant == BoneVariant.Bat ? JsonValue.Create("bat") : JsonValue.Create(true);
            config["miss_dropout"] = AdapterConfig.Float(Dropout);
        }

        /// <summary>
        /// Reads a MiSS config (or a legacy BONE one, which has the same fields). PEFT's defaults: <c>r</c> = 64,
        /// <c>init_weights</c> = true. <c>false</c> (PEFT's random start) reads as <see cref="BoneVariant.Bone"/>, whose
        /// shape and forward it shares; <c>"mini"</c> is refused.
        /// </summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            double r = AdapterConfig.Number(config, "r", file, fallback: 64);
            if (r != System.Math.Floor(r) || r < 1 || r > int.MaxValue)
                throw new InvalidDataException($"{file}: field 'r' must be a whole number of at least 1, got {config["r"]!.ToJsonString()}");
            var variant = config["init_weights"] switch
            {
                null => BoneVariant.Bone,
                JsonValue v when v.TryGetValue<bool>(out _) => BoneVariant.Bone,
                JsonValue v when v.TryGetValue<string>(out var s) && s == "bat" => BoneVariant.Bat,
                JsonValue v when v.TryGetValue<string>(out var s) && s == "mini" =>
                    throw new InvalidDataException($"{file}: init_weights \"mini\" (MiSS with mini_r) is not supported by PeftDsl; supported: true, false, \"bat\""),
                var other => throw new InvalidDataException($"{file}: field 'init_weights' must be true, false or \"bat\", got {other.ToJsonString()}"),
            };
            double dropout = AdapterConfig.Probability(config, "miss_dropout", file); // legacy BONE files have none
            return new BoneOptions { Block = (int)r, Variant = variant, Dropout = dropout };
        }
    }
}
