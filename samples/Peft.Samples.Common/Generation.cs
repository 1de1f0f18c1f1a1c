using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Samples;

/// <summary>Greedy text generation and the successor task's score.</summary>
public static class Generation
{
    /// <summary>Greedy continuation of <paramref name="prompt"/>, up to <paramref name="maxChars"/> characters or a full stop.</summary>
    public static string Complete(TinyTransformer model, CharTokenizer tokenizer, string prompt, int maxChars = 12)
    {
        using var _ = no_grad();
        var ids = tokenizer.Encode(prompt).ToList();
        for (int i = 0; i < maxChars; i++)
        {
            using var scope = NewDisposeScope();
            var window = ids.Skip(Math.Max(0, ids.Count - model.Context)).ToArray();
            long next = model.forward(tensor(window).unsqueeze(0))[0, -1].argmax().item<long>();
            ids.Add(next);
            if (tokenizer.Decode(new[] { next }) == ".") break;
        }
        return tokenizer.Decode(ids.Skip(prompt.Length));
    }

    /// <summary>The share of "after N comes " prompts completed exactly as "M.".</summary>
    public static double SuccessorAccuracy(TinyTransformer model, CharTokenizer tokenizer, IReadOnlyList<int> numbers) =>
        numbers.Count(n => Complete(model, tokenizer, ToyCorpora.Prompt(n)) == ToyCorpora.Answer(n)) / (double)numbers.Count;
}
