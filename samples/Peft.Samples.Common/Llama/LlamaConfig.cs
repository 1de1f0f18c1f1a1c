using System;
using System.IO;
using System.Text.Json;

namespace Peft.Samples.Llama;

/// <summary>The fields of a Hugging Face <c>LlamaConfig</c> (<c>config.json</c>) that the model reads.</summary>
public sealed record LlamaConfig(
    int HiddenSize, int IntermediateSize, int NumHiddenLayers, int NumAttentionHeads, int NumKeyValueHeads, int HeadDim,
    int VocabSize, int MaxPositionEmbeddings, double RmsNormEps = 1e-5, double RopeTheta = 10000.0,
    bool TieWordEmbeddings = true, int BosTokenId = 1, int EosTokenId = 2)
{
    /// <summary>Reads <c>config.json</c>; <c>head_dim</c> defaults to hidden / heads and <c>num_key_value_heads</c> to the heads, as in transformers.</summary>
    public static LlamaConfig Read(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        int Int(string name, int? fallback = null) =>
            root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32()
            : fallback ?? throw new InvalidDataException($"'{path}' lacks \"{name}\"");
        double Double(string name, double fallback) =>
            root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;
        if (root.TryGetProperty("rope_scaling", out var scaling) && scaling.ValueKind != JsonValueKind.Null)
            throw new NotSupportedException($"'{path}': rope_scaling is not supported by this sample's Llama");
        int hidden = Int("hidden_size"), heads = Int("num_attention_heads");
        return new LlamaConfig(
            hidden, Int("intermediate_size"), Int("num_hidden_layers"), heads, Int("num_key_value_heads", heads),
            Int("head_dim", hidden / heads), Int("vocab_size"), Int("max_position_embeddings", 2048),
            Double("rms_norm_eps", 1e-6), Double("rope_theta", 10000.0),
            !root.TryGetProperty("tie_word_embeddings", out var tie) || tie.ValueKind != JsonValueKind.False,
            Int("bos_token_id", 1), Int("eos_token_id", 2));
    }
}
