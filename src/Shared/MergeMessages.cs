// The literature merges' wording, compiled into both the analyzers and the runtime (as PeftMessages is), so PEFT032
// and MergeSpec.Validate give one reason.
namespace Peft
{
    internal static class MergeMessages
    {
        /// <summary>Why a method cannot run in core space, by method name; null where it can.</summary>
        public static string? NotInCoreSpace(string method) => method switch
        {
            "Widen" => "WIDEN scores the columns of the base weight, which the core matrices do not have",
            "LoraLego" => "LoRA-LEGO clusters the sources' own rank-1 units",
            _ => null,
        };
    }
}
