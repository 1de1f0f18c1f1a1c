using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Peft.Generators.Emit
{
    /// <summary>The one module initializer per compilation that runs the runtime's native bootstrap.</summary>
    internal static class ModuleInitializerEmitter
    {
        public const string HintName = "PeftDsl.ModuleInitializer.g.cs";

        /// <summary>Whether the compilation can see the runtime's bootstrap and module initializers.</summary>
        public static bool CanEmit(Compilation compilation) =>
            compilation is CSharpCompilation { LanguageVersion: >= LanguageVersion.CSharp9 }
            && compilation.GetTypeByMetadataName("Peft.Runtime.Native.TorchNative") is { } native
            && compilation.IsSymbolAccessibleWithin(native, compilation.Assembly)
            && compilation.GetTypeByMetadataName("System.Runtime.CompilerServices.ModuleInitializerAttribute") is { } attribute
            && compilation.IsSymbolAccessibleWithin(attribute, compilation.Assembly);

        /// <summary>The file: a wholly generated type, so its attributes sit on the type.</summary>
        public static string Emit()
        {
            var w = new CodeWriter();
            GeneratedCode.WriteFileHeader(w);
            w.Open("namespace PeftDsl.Generated");
            w.Line("/// <summary>Loads libtorch before the first tensor is made, so annotated models work without setup.</summary>");
            GeneratedCode.WriteMemberAttributes(w);
            w.Open("internal static class PeftModuleInitializer");
            w.Line("/// <summary>Runs the PeftDsl runtime's native bootstrap when this assembly loads (idempotent).</summary>");
            w.Line("[global::System.Runtime.CompilerServices.ModuleInitializer]");
            w.Line("internal static void Initialize() => global::Peft.Runtime.Native.TorchNative.EnsureLoaded();");
            w.Close();
            w.Close();
            return w.ToString();
        }
    }
}
