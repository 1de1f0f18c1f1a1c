using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Samples.Llama;

/// <summary>The SentencePiece tokenizer of a Llama folder (<c>tokenizer.model</c>, through Microsoft.ML.Tokenizers) and text-level helpers.</summary>
public sealed class LlamaText
{
    private readonly LlamaTokenizer _tokenizer;

    private LlamaText(LlamaTokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>Reads <c>tokenizer.model</c> from a model folder.</summary>
    public static LlamaText Load(string folder)
    {
        using var stream = File.OpenRead(Path.Combine(folder, "tokenizer.model"));
        return new LlamaText(LlamaTokenizer.Create(stream));
    }

    /// <summary>Token ids, beginning with BOS (id 1) as llama2.c and transformers encode a prompt.</summary>
    public int[] Encode(string text, bool bos = true) =>
        _tokenizer.EncodeToIds(text, addBeginningOfSentence: bos, addEndOfSentence: false).ToArray();

    /// <summary>Text of token ids (BOS / EOS dropped).</summary>
    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids) ?? string.Empty;
}

/// <summary>Greedy decoding and likelihood for <see cref="LlamaForCausalLM"/>.</summary>
public static class LlamaEval
{
    /// <summary>The greedy continuation of <paramref name="prompt"/> (ids incl. BOS): <paramref name="maxNewTokens"/> new ids, stopping at EOS.</summary>
    public static List<int> Greedy(LlamaForCausalLM model, IReadOnlyList<int> prompt, int maxNewTokens)
        => Sample(model, prompt, maxNewTokens, temperature: 0, random: null);

    /// <summary>
    /// A continuation sampled at <paramref name="temperature"/> (0: greedy), stopping at EOS or BOS (the start of
    /// another story). The whole sequence is run again for each token: no KV cache, the model stays readable.
    /// </summary>
    public static List<int> Sample(LlamaForCausalLM model, IReadOnlyList<int> prompt, int maxNewTokens, double temperature, Random? random)
    {
        model.eval();
        var ids = prompt.ToList();
        var generated = new List<int>();
        using var _ = no_grad();
        for (int i = 0; i < maxNewTokens && ids.Count < model.Config.MaxPositionEmbeddings; i++)
        {
            using var scope = NewDisposeScope();
            var logits = model.forward(tensor(ids.Select(t => (long)t).ToArray()).unsqueeze(0))[0, -1];
            int next;
            if (temperature <= 0) next = (int)logits.argmax().item<long>();
            else
            {
                var probs = nn.functional.softmax(logits.to(ScalarType.Float64) / temperature, 0).data<double>().ToArray();
                double u = random!.NextDouble(), sum = 0;
                next = probs.Length - 1;
                for (int j = 0; j < probs.Length; j++)
                {
                    sum += probs[j];
                    if (u < sum) { next = j; break; }
                }
            }
            if (next == model.Config.EosTokenId || (next == model.Config.BosTokenId && temperature > 0)) break;
            ids.Add(next);
            generated.Add(next);
        }
        return generated;
    }

    /// <summary>
    /// <paramref name="count"/> continuations of one prompt sampled together as a batch at <paramref name="temperature"/>
    /// (torch's generator: seed it with <c>manual_seed</c>), each cut at its first EOS or BOS.
    /// </summary>
    public static List<List<int>> SampleBatch(LlamaForCausalLM model, IReadOnlyList<int> prompt, int count, int maxNewTokens, double temperature)
    {
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(prompt.Select(t => (long)t).ToArray()).unsqueeze(0).expand(count, -1).contiguous();
        int steps = Math.Min(maxNewTokens, model.Config.MaxPositionEmbeddings - prompt.Count);
        for (int i = 0; i < steps; i++)
        {
            var logits = model.forward(ids).select(1, -1);
            var next = multinomial(nn.functional.softmax(logits / temperature, -1), 1);
            ids = cat(new[] { ids, next }, 1);
        }
        var rows = new List<List<int>>(count);
        var all = ids.narrow(1, prompt.Count, steps).data<long>().ToArray();
        for (int r = 0; r < count; r++)
        {
            var row = new List<int>();
            for (int j = 0; j < steps; j++)
            {
                int t = (int)all[r * steps + j];
                if (t == model.Config.EosTokenId || t == model.Config.BosTokenId) break;
                row.Add(t);
            }
            rows.Add(row);
        }
        return rows;
    }

    /// <summary>Mean negative log-likelihood (nats per token) of every token after the first, given those before it.</summary>
    public static double MeanNll(LlamaForCausalLM model, IReadOnlyList<int> ids)
    {
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var input = tensor(ids.Select(t => (long)t).ToArray()).unsqueeze(0);
        var logits = model.forward(input)[0];
        var n = ids.Count - 1;
        return nn.functional.cross_entropy(logits.narrow(0, 0, n), input[0].narrow(0, 1, n)).item<float>();
    }
}
