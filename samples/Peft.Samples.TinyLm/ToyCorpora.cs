using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace Peft.Samples.TinyLm;

/// <summary>
/// The sample's data, generated here so the task is measurable: a toy English grammar to pre-train on, and
/// arithmetic in words ("three plus four is seven.") to fine-tune on, with held-out sums to score.
/// </summary>
public static class ToyCorpora
{
    public static readonly string[] Numbers =
    {
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    };

    private static readonly string[] Determiners = { "the", "a", "every", "one" };
    private static readonly string[] Adjectives = { "small", "big", "red", "quiet", "happy", "old" };
    private static readonly string[] Nouns = { "cat", "dog", "bird", "child", "farmer", "river", "tree", "house" };
    private static readonly string[] Verbs = { "sees", "likes", "finds", "follows", "is near", "paints" };

    /// <summary>Sentences of a small grammar, plus counting, so number words are familiar before fine-tuning.</summary>
    public static string Grammar(int sentences, int seed)
    {
        var random = new Random(seed);
        var text = new StringBuilder();
        for (int i = 0; i < sentences; i++)
        {
            if (random.Next(4) == 0)
            {
                int start = random.Next(Numbers.Length - 4);
                text.Append(string.Join(' ', Numbers.Skip(start).Take(4))).Append(". ");
                continue;
            }
            text.Append(NounPhrase(random)).Append(' ').Append(Pick(random, Verbs)).Append(' ').Append(NounPhrase(random)).Append(". ");
        }
        return text.ToString();
    }

    private static string NounPhrase(Random random) =>
        random.Next(2) == 0 ? $"{Pick(random, Determiners)} {Pick(random, Nouns)}" : $"{Pick(random, Determiners)} {Pick(random, Adjectives)} {Pick(random, Nouns)}";

    private static string Pick(Random random, string[] words) => words[random.Next(words.Length)];

    /// <summary>All sums a + b with a, b ≤ 9, split into a training set and held-out problems.</summary>
    public static (List<(int A, int B)> Train, List<(int A, int B)> Test) Sums(int seed)
    {
        var all = (from a in Enumerable.Range(0, 10) from b in Enumerable.Range(0, 10) select (a, b)).ToList();
        var random = new Random(seed);
        var shuffled = all.OrderBy(_ => random.Next()).ToList();
        return (shuffled.Skip(20).ToList(), shuffled.Take(20).ToList());
    }

    public static string Prompt((int A, int B) sum) => $"{Numbers[sum.A]} plus {Numbers[sum.B]} is ";

    public static string Sentence((int A, int B) sum) => Prompt(sum) + Numbers[sum.A + sum.B] + ". ";

    public static string Arithmetic(IReadOnlyList<(int A, int B)> sums, int sentences, int seed)
    {
        var random = new Random(seed);
        var text = new StringBuilder();
        for (int i = 0; i < sentences; i++) text.Append(Sentence(sums[random.Next(sums.Count)]));
        return text.ToString();
    }
}
