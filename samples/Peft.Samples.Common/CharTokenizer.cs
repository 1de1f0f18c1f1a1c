using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Samples;

/// <summary>One token per character.</summary>
public sealed class CharTokenizer
{
    private readonly char[] _chars;
    private readonly Dictionary<char, long> _ids;

    public CharTokenizer(IEnumerable<string> texts)
    {
        _chars = texts.SelectMany(t => t).Distinct().OrderBy(c => c).ToArray();
        _ids = _chars.Select((c, i) => (c, (long)i)).ToDictionary(p => p.c, p => p.Item2);
    }

    public int VocabularySize => _chars.Length;

    public long[] Encode(string text) => text.Select(c => _ids.TryGetValue(c, out var id) ? id : throw new ArgumentException($"character '{c}' is not in the vocabulary")).ToArray();

    public string Decode(IEnumerable<long> ids) => new(ids.Select(i => _chars[i]).ToArray());

    /// <summary>Random windows of <paramref name="context"/> + 1 characters: inputs and next-character targets.</summary>
    public (Tensor Inputs, Tensor Targets) Batch(long[] data, int batch, int context, Random random)
    {
        var windows = new long[batch * (context + 1)];
        for (int i = 0; i < batch; i++)
            Array.Copy(data, random.Next(data.Length - context - 1), windows, i * (context + 1), context + 1);
        var all = tensor(windows).view(batch, context + 1);
        return (all[.., ..^1], all[.., 1..]);
    }
}
