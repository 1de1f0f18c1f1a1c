using System;
using System.Collections.Generic;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// LoRA on a <c>Linear</c> layer: y = xWᵀ + b + s·(dropout(x)·Aᵀ)·Bᵀ, A [r, in], B [out, r], with PEFT's
    /// parameter names <c>lora_A.&lt;adapter&gt;.weight</c> and <c>lora_B.&lt;adapter&gt;.weight</c>.
    /// </summary>
    public sealed class LoRALinear : AdapterLayerBase
    {
        private readonly AdapterModuleDict<Linear> lora_A = new();
        private readonly AdapterModuleDict<Linear> lora_B = new();
        private readonly Dictionary<string, LoRAOptions> _options = new(StringComparer.Ordinal);

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public LoRALinear(string site, Linear baseLayer, string adapter, LoRAOptions options) : base(site, baseLayer)
        {
            (InFeatures, OutFeatures) = LinearShape(baseLayer, site);
            register_module("lora_A", lora_A);
            register_module("lora_B", lora_B);
            AddAdapter(adapter, options);
        }

        /// <summary>The base layer's input size.</summary>
        public long InFeatures { get; }

        /// <summary>The base layer's output size.</summary>
        public long OutFeatures { get; }

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <summary>The options of adapter <paramref name="adapter"/>.</summary>
        public LoRAOptions Options(string adapter)
        {
            RequireAdapter(adapter);
            return _options[adapter];
        }

        /// <summary>The A factor of an adapter ([r, in]).</summary>
        public Parameter LoraA(string adapter) => lora_A[adapter].weight!;

        /// <summary>The B factor of an adapter ([out, r]).</summary>
        public Parameter LoraB(string adapter) => lora_B[adapter].weight!;

        /// <summary>Adds a named adapter; it is checked against the layer's shape first.</summary>
        public void AddAdapter(string adapter, LoRAOptions options)
        {
            LoRA.Validate(Site, options, InFeatures, OutFeatures);
            RegisterAdapterName(adapter);
            var weight = BaseWeight;
            var a = nn.Linear(InFeatures, options.Rank, hasBias: false, device: weight.device, dtype: weight.dtype);
            var b = nn.Linear(options.Rank, OutFeatures, hasBias: false, device: weight.device, dtype: weight.dtype);
            using (no_grad())
            {
                if (options.Init == LoRAInit.Gaussian)
                    nn.init.normal_(a.weight!, 0, 1.0 / options.Rank);
                else
                    nn.init.kaiming_uniform_(a.weight!, a: Math.Sqrt(5));
                nn.init.zeros_(b.weight!);
            }
            lora_A.Add(adapter, a);
            lora_B.Add(adapter, b);
            _options[adapter] = options;
        }

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            if (AdaptersDisabled && MergedAdapters.Count > 0) Unmerge();
            var result = BaseLayer.forward(input);
            foreach (var adapter in UnmergedActiveAdapters)
            {
                var options = _options[adapter];
                var x = options.Dropout > 0 && training ? nn.functional.dropout(input, options.Dropout, training: true) : input;
                var update = nn.functional.linear(nn.functional.linear(x, LoraA(adapter)), LoraB(adapter));
                result = result.add(update, alpha: options.Scaling);
            }
            return result;
        }

        /// <inheritdoc />
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            return matmul(LoraB(adapter), LoraA(adapter)).mul(_options[adapter].Scaling);
        }

        /// <inheritdoc />
        public override IEnumerable<(string Name, Parameter Parameter)> AdapterParameters(string adapter)
        {
            RequireAdapter(adapter);
            yield return ($"lora_A.{adapter}.weight", LoraA(adapter));
            yield return ($"lora_B.{adapter}.weight", LoraB(adapter));
        }

        /// <inheritdoc />
        public override AdapterSettings Settings(string adapter)
        {
            var o = Options(adapter);
            return new LoRASettings(o.Rank, o.Alpha, o.Dropout, o.UseRsLora, UseDora: false, o.Init);
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not LoRASettings lora || lora.UseDora)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a LoRA adapter; the file describes {Describe(settings)}");
            if (lora.Rank != current.Rank)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' has rank {current.Rank}; the file has rank {lora.Rank}");
            _options[adapter] = current with { Alpha = lora.Alpha, Dropout = lora.Dropout, UseRsLora = lora.UseRsLora };
        }

        internal static string Describe(AdapterSettings settings) =>
            settings is LoRASettings { UseDora: true } ? "a DoRA adapter" : $"a {settings.PeftType} adapter";

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            lora_A.Remove(adapter);
            lora_B.Remove(adapter);
            _options.Remove(adapter);
        }
    }

    /// <summary>The entry point generated code calls for <c>[LoRA]</c>.</summary>
    public static class LoRA
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="LoRALinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks the rank against the layer's real shape, with the
        /// analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="LoRALinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, LoRAOptions options)
        {
            switch (layer)
            {
                case LoRALinear existing:
                    existing.AddAdapter(adapter, options);
                    return existing;
                case Linear linear:
                    return new LoRALinear(site, linear, adapter, options);
                case null:
                    throw new InvalidOperationException($"{site}: the member is null when RegisterComponents() runs; assign the layer first (a field initializer or the constructor)");
                default:
                    throw new InvalidOperationException(PeftMessages.Format(PeftMessages.UnsupportedLayer, site, "LoRA", layer.GetType().Name));
            }
        }

        internal static void Validate(string site, LoRAOptions options, long inFeatures, long outFeatures)
        {
            if (options.Rank < 1)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.RankTooSmall, site, "LoRA", options.Rank));
            long max = Math.Min(inFeatures, outFeatures);
            if (options.Rank > max)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.RankTooLarge, site, "LoRA", options.Rank, inFeatures, outFeatures, max));
            if (!(options.Dropout >= 0 && options.Dropout < 1))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.DropoutOutOfRange, site, options.Dropout));
        }
    }
}
