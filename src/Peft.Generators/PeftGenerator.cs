using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Text;
using Peft.Generators.Diagnostics;
using Peft.Generators.Emit;
using Peft.Generators.Model;
using Peft.Generators.Parse;

namespace Peft.Generators
{
    /// <summary>
    /// PeftDsl's incremental generator. For each partial TorchSharp module class with PeftDsl attributes it writes
    /// <c>RegisterComponents()</c> (adapter wiring, then freezing on <c>[PeftModel]</c>), the <c>IPeftComponent</c> and
    /// <c>IPeftModel</c> implementations and a static <c>PeftInfo</c>; and once per compilation a module initializer that
    /// loads libtorch.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed class PeftGenerator : IIncrementalGenerator
    {
        /// <inheritdoc/>
        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            foreach (KnownAttribute known in KnownAttributes.All)
            {
                if (known.Kind == AttributeKind.Merge) continue; // read with its class; never the class's canonical attribute

                IncrementalValuesProvider<ParseResult?> classes = context.SyntaxProvider
                    .ForAttributeWithMetadataName(
                        known.MetadataName,
                        static (node, _) => node is ClassDeclarationSyntax or VariableDeclaratorSyntax or PropertyDeclarationSyntax,
                        (attributeContext, cancellationToken) => ClassParser.Parse(attributeContext, known, cancellationToken))
                    .WithTrackingName(TrackingNames.ParseClass)
                    .Where(static result => result is not null)
                    .WithTrackingName(TrackingNames.Classes);

                context.RegisterSourceOutput(classes, static (output, result) =>
                {
                    if (result!.Error is { } error)
                        output.ReportDiagnostic(Diagnostic.Create(
                            DiagnosticDescriptors.InternalError, error.Location?.ToLocation(), error.ClassName, error.Exception));
                    else
                        ClassEmitter.AddSource(output, result.Model!);
                });
            }

            IncrementalValueProvider<bool> canInitialize = context.CompilationProvider
                .Select(static (compilation, _) => ModuleInitializerEmitter.CanEmit(compilation))
                .WithTrackingName(TrackingNames.ModuleInitializer);

            context.RegisterSourceOutput(canInitialize, static (output, canEmit) =>
            {
                if (canEmit) output.AddSource(ModuleInitializerEmitter.HintName, SourceText.From(ModuleInitializerEmitter.Emit(), Encoding.UTF8));
            });
        }
    }
}
