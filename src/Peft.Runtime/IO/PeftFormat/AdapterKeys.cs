using System;

namespace Peft.Runtime.IO
{
    /// <summary>PEFT's file keys: <c>base_model.model.&lt;path&gt;.&lt;container&gt;.&lt;leaf&gt;</c>, adapter name removed.</summary>
    public static class AdapterKeys
    {
        /// <summary>The prefix PEFT puts before every module path.</summary>
        public const string Prefix = "base_model.model.";

        /// <summary>PEFT's container of DoRA magnitude vectors.</summary>
        public const string DoraMagnitude = "lora_magnitude_vector";

        /// <summary>
        /// Removes the adapter name where PEFT keeps it in memory: second to last for module dicts
        /// (<c>lora_A.default.weight</c> → <c>lora_A.weight</c>), last for parameter dicts
        /// (<c>hada_w1_a.default</c> → <c>hada_w1_a</c>); DoRA's <c>lora_magnitude_vector.default.weight</c> →
        /// <c>lora_magnitude_vector</c>, as PEFT saves it.
        /// </summary>
        public static string StripAdapterName(string inMemoryName, string adapter)
        {
            var parts = inMemoryName.Split('.');
            // DoRA's magnitude lives in memory as lora_magnitude_vector.<adapter>.weight (a module dict since a PEFT refactor)
            // but PEFT still saves it under its older parameter-dict key, lora_magnitude_vector, without ".weight"
            // (LoraModel._get_adapter_state_dict / _remap_adapter_state_dict_for_load).
            if (parts.Length >= 3 && parts[^3] == DoraMagnitude && parts[^2] == adapter && parts[^1] == "weight")
                return string.Join('.', parts[..^2]);
            if (parts.Length >= 2 && parts[^2] == adapter)
                return string.Join('.', parts[..^2]) + "." + parts[^1];
            if (parts.Length >= 2 && parts[^1] == adapter)
                return string.Join('.', parts[..^1]);
            return inMemoryName;
        }

        /// <summary>The file key of a parameter at <paramref name="modulePath"/>.</summary>
        public static string FileKey(string modulePath, string name) => Prefix + PeftModelCore.Join(modulePath, name);

        /// <summary>The prefix of tensors PEFT holds on its tuner model rather than on a layer (VeRA's <c>base_model.vera_A</c>).</summary>
        public const string ModelPrefix = "base_model.";

        /// <summary>The file key of a tensor held once for the whole model, e.g. <c>vera_A.default</c> → <c>base_model.vera_A</c>.</summary>
        public static string SharedKey(string name, string adapter) => ModelPrefix + StripAdapterName(name, adapter);

        /// <summary>A key without PEFT's prefix (readers accept both forms).</summary>
        public static string WithoutPrefix(string key) => key.StartsWith(Prefix, StringComparison.Ordinal) ? key[Prefix.Length..] : key;
    }
}
