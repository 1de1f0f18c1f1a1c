using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;

namespace Peft.Samples;

/// <summary>Puts fresh adapters on a pre-trained base.</summary>
public static class AdapterSetup
{
    /// <summary>
    /// Replaces each adapter <c>default</c> by a fresh one with the same options, on the base weights as they are now,
    /// optionally with another rank (LoRA, DoRA, LaMDA, LoLDU; α scaled with it, so α / r stays as declared) or block size (Bone).
    /// </summary>
    /// <remarks>
    /// The generated code creates the adapters when the model is constructed, from the attributes. Some methods look
    /// at the base weight when an adapter is created: DoRA's magnitude starts as the row norms of W, PiSSA factorises
    /// W. Here the base is pre-trained after construction, so the adapters are made again once it is final, exactly as
    /// a model that loads a pre-trained checkpoint must do before fine-tuning with those methods.
    /// </remarks>
    public static void Recreate(TinyTransformer model, int? rank = null)
    {
        foreach (var (_, layer) in model.AdapterLayers)
        {
            switch (layer)
            {
                case LoRALinear lora:
                {
                    var options = lora.Options("default");
                    bool dora = lora.IsDora("default");
                    int r = rank ?? options.Rank;
                    options = options with { Rank = r, Alpha = options.Alpha * r / options.Rank };
                    lora.DeleteAdapter("default");
                    if (dora)
                        lora.AddAdapter("default", new DoRAOptions { Rank = options.Rank, Alpha = options.Alpha, Dropout = options.Dropout, UseRsLora = options.UseRsLora, Init = options.Init });
                    else
                        lora.AddAdapter("default", options);
                    break;
                }
                case BoneLinear bone:
                {
                    var options = bone.Options("default");
                    bone.DeleteAdapter("default");
                    bone.AddAdapter("default", options with { Block = rank ?? options.Block });
                    break;
                }
                case LaMDALinear lamda:
                {
                    // LaMDA starts from W's singular vectors: those of the pre-trained base.
                    var options = lamda.Options("default");
                    int r = rank ?? options.Rank;
                    lamda.DeleteAdapter("default");
                    lamda.AddAdapter("default", options with { Rank = r, Alpha = options.Alpha * r / options.Rank });
                    break;
                }
                case LoLDULinear loldu:
                {
                    // LoLDU's factors are the LU decomposition of W: that of the pre-trained base.
                    var options = loldu.Options("default");
                    loldu.DeleteAdapter("default");
                    loldu.AddAdapter("default", options with { Rank = rank ?? options.Rank });
                    break;
                }
                default:
                    throw new NotSupportedException($"{layer.GetType().Name}: the samples recreate LoRA, DoRA, Bone, LaMDA and LoLDU adapters only");
            }
        }
        ((IPeftModel)model).SetActiveAdapters("default");
        model.FreezeBaseModel();
    }

    /// <summary>
    /// Copies every parameter that is not an adapter's (embeddings, norms, base layers, the head) from
    /// <paramref name="source"/> into <paramref name="target"/>: the same pre-trained base under any adapter method,
    /// since every method keeps the wrapped layer as <c>base_layer</c>.
    /// </summary>
    public static void CopyBaseWeights(TinyTransformer source, TinyTransformer target)
    {
        var adapterParameters = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (path, layer) in target.AdapterLayers)
            foreach (var adapter in layer.AdapterNames)
                foreach (var (name, _) in layer.AdapterParameters(adapter))
                    adapterParameters.Add(path + "." + name);
        var from = source.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        using var _ = TorchSharp.torch.no_grad();
        foreach (var (name, parameter) in target.named_parameters())
        {
            if (adapterParameters.Contains(name)) continue;
            if (!from.TryGetValue(name, out var value))
                throw new InvalidOperationException($"the pre-trained model has no parameter '{name}'");
            parameter.copy_(value);
        }
    }
}
