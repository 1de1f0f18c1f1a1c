using System.Collections.Generic;
using System.Text.Json.Nodes;

namespace Peft.Runtime
{
    /// <summary>
    /// One adapter's hyper-parameters on one layer, the way PEFT's <c>adapter_config.json</c> records them.
    /// Each method derives its own record.
    /// </summary>
    public abstract record AdapterSettings
    {
        /// <summary>PEFT's <c>peft_type</c> for this method.</summary>
        public abstract string PeftType { get; }

        /// <summary>
        /// The config fields that PEFT lets differ per layer through a pattern (<c>r</c> → <c>rank_pattern</c>,
        /// <c>lora_alpha</c> → <c>alpha_pattern</c>), with this layer's values.
        /// </summary>
        public virtual IReadOnlyDictionary<string, double> PerLayerFields => new Dictionary<string, double>();

        /// <summary>Writes the fields shared by all layers of the adapter (beside the per-layer ones) into <paramref name="config"/>.</summary>
        public abstract void WriteSharedFields(JsonObject config);

        /// <summary>
        /// Writes the fields that list layers (IA3's <c>feedforward_modules</c>) into <paramref name="config"/>, from the
        /// settings of every layer of the adapter; called on the first layer's settings. None by default.
        /// </summary>
        public virtual void WriteLayerListFields(JsonObject config, IReadOnlyList<(string Path, AdapterSettings Settings)> sites) { }
    }
}
