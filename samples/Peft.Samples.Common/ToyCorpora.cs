using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace Peft.Samples;

/// <summary>
/// The sample's data, generated here so the task is measurable: a toy English grammar with counting runs to
/// pre-train on, and a sentence form it never saw ("after seven comes eight.") to fine-tune on.
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

    /// <summary>The successor task, "after seven comes eight.", for every number with a successor.</summary>
    public static IReadOnlyList<int> SuccessorNumbers { get; } = Enumerable.Range(0, Numbers.Length - 1).ToList();

    public static string Prompt(int n) => $"after {Numbers[n]} comes ";

    public static string Answer(int n) => Numbers[n + 1] + ".";

    public static string Sentence(int n) => Prompt(n) + Answer(n) + " ";

    public static string SuccessorText(IReadOnlyList<int> numbers, int sentences, int seed)
    {
        var random = new Random(seed);
        var text = new StringBuilder();
        for (int i = 0; i < sentences; i++) text.Append(Sentence(numbers[random.Next(numbers.Count)]));
        return text.ToString();
    }
}
