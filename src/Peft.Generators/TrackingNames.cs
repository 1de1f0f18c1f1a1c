namespace Peft.Generators
{
    /// <summary>The names of the generator's pipeline steps, for incrementality tests.</summary>
    internal static class TrackingNames
    {
        /// <summary>One step per attribute in <see cref="Parse.KnownAttributes"/>: the class models (null where nothing is emitted), or an internal error.</summary>
        public const string ParseClass = "PeftDsl.ParseClass";

        /// <summary>The non-null results: class models that get a file, and internal errors to report.</summary>
        public const string Classes = "PeftDsl.Classes";

        /// <summary>Whether the compilation can run the native bootstrap from a module initializer.</summary>
        public const string ModuleInitializer = "PeftDsl.ModuleInitializer";
    }
}
