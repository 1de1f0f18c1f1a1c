using System;

namespace Peft.Runtime
{
    /// <summary>One warning from the runtime: what it concerns and what it says.</summary>
    /// <param name="Source">The file, layer or model it concerns, e.g. an <c>adapter_config.json</c>'s path.</param>
    /// <param name="Message">The whole message, naming the source, the layer and the values involved.</param>
    public sealed record PeftWarning(string Source, string Message);

    /// <summary>
    /// Where the runtime reports what it does that a user should know but that is no error, e.g. a loaded file whose
    /// <c>lora_alpha</c> replaces the declared <c>Alpha</c>. Subscribe to <see cref="Raised"/> to route warnings into
    /// your own logging (or to assert on them in tests); while nobody is subscribed, each warning is one line on
    /// standard error, <c>PeftDsl warning: …</c>.
    /// </summary>
    public static class PeftWarnings
    {
        /// <summary>Raised for every warning, on the thread that caused it. Subscribers replace the standard-error line.</summary>
        public static event Action<PeftWarning>? Raised;

        internal static void Raise(string source, string message)
        {
            var handlers = Raised;
            if (handlers is not null) handlers(new PeftWarning(source, message));
            else Console.Error.WriteLine("PeftDsl warning: " + message);
        }
    }
}
