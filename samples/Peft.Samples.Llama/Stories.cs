using System.Collections.Generic;
using System.Linq;
using Peft.Samples.Llama;

namespace Peft.Samples.LlamaSample;

/// <summary>The fine-tuning data: stories the pre-trained model writes itself, with the girl renamed.</summary>
internal static class Stories
{
    /// <summary>Openings that do not name a girl: their stories are kept as the model writes them, so that only the name changes.</summary>
    private static readonly string[] OtherOpenings =
    {
        "Once upon a time, there was a little boy named",
        "One day, a big dog",
        "Once upon a time, there was a little bird",
    };

    /// <summary>
    /// <paramref name="perPrompt"/> stories sampled (temperature 0.8, <paramref name="tokens"/> tokens) from each girl
    /// opening, where every "Lily" becomes "Mia" (stories that name her otherwise are dropped), and half as many from
    /// other openings, unchanged.
    /// </summary>
    public static List<string> SelfGenerated(LlamaForCausalLM model, LlamaText text, IEnumerable<string> girlPrompts, int perPrompt, int tokens)
    {
        var stories = new List<string>();
        foreach (var prompt in girlPrompts)
        {
            var ids = text.Encode(prompt);
            foreach (var continuation in LlamaEval.SampleBatch(model, ids, perPrompt, tokens, 0.8))
            {
                string story = text.Decode(ids.Concat(continuation));
                if (story.Contains("Lily")) stories.Add(story.Replace("Lily", "Mia"));
            }
        }
        foreach (var prompt in OtherOpenings)
        {
            var ids = text.Encode(prompt);
            foreach (var continuation in LlamaEval.SampleBatch(model, ids, perPrompt / 2, tokens, 0.8))
            {
                string story = text.Decode(ids.Concat(continuation));
                if (!story.Contains("Lily")) stories.Add(story);
            }
        }
        return stories;
    }
}
