using System;
using System.Collections.Generic;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// The file of a method saved as exactly a plain LoRA (LaMDA, LoLDU): PEFT's <c>lora_A</c> [r, in] and <c>lora_B</c>
    /// [out, r], and the checks that a file's LoRA settings fit such an adapter, in the methods' shared wording.
    /// </summary>
    internal static class PlainLoRAFile
    {
        /// <summary>The in-memory name of an adapter's <c>lora_A</c> (the file key without the adapter name).</summary>
        public static string KeyA(string adapter) => $"lora_A.{adapter}.weight";

        /// <summary>The in-memory name of an adapter's <c>lora_B</c>.</summary>
        public static string KeyB(string adapter) => $"lora_B.{adapter}.weight";

        /// <summary>The tensors a rank-<paramref name="rank"/> LoRA file holds for a layer of the given sizes, with their shapes.</summary>
        public static IReadOnlyList<(string Name, long[] Shape)> Shapes(string adapter, long rank, long inFeatures, long outFeatures) =>
            new[] { (KeyA(adapter), new[] { rank, inFeatures }), (KeyB(adapter), new[] { outFeatures, rank }) };

        /// <summary>What a save writes: <paramref name="a"/> as <c>lora_A</c> and <paramref name="b"/> as <c>lora_B</c>.</summary>
        public static IReadOnlyList<(string Name, Tensor Tensor)> Tensors(string adapter, Tensor a, Tensor b) =>
            new List<(string, Tensor)> { (KeyA(adapter), a), (KeyB(adapter), b) };

        /// <summary>The file's settings as a plain LoRA (no DoRA); otherwise refused, naming <paramref name="method"/> and the layer.</summary>
        public static LoRAOptions Require(string site, string adapter, string method, AdapterSettings settings) =>
            settings is LoRAOptions { UseDora: false } lora
                ? lora
                : throw new InvalidOperationException($"{site}: adapter '{adapter}' is a {method} adapter, saved as a plain LoRA; the file describes {LoRALinear.Describe(settings)}");

        /// <summary>Refuses a LoRA whose init changed the base weight (its factors fit only that residual) or whose rank is not <paramref name="rank"/>.</summary>
        public static void RequireOnBaseWeight(string site, string adapter, string method, LoRAOptions lora, int rank)
        {
            if (LoRAInitialization.ChangesBaseWeight(lora.Init))
                throw new InvalidOperationException($"{site}: adapter '{adapter}' is a {method} adapter; the file's LoRA was initialised with {lora.Init}, so its factors fit only that init's residual base weight");
            if (lora.Rank != rank)
                throw new InvalidOperationException($"{site}: adapter '{adapter}' has rank {rank}; the file has rank {lora.Rank}");
        }
    }
}
