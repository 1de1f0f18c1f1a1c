using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Generators.Parse;

namespace Peft.Generators.Diagnostics
{
    /// <summary>
    /// Checks class-level adapter attributes: every name in Targets is a field or property the class declares, and
    /// Targets is there at all (PEFT013). PEFT's <c>target_modules</c> skips a mistyped name silently; this does not.
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class TargetsAnalyzer : DiagnosticAnalyzer
    {
        /// <inheritdoc/>
        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(
            DiagnosticDescriptors.UnknownTarget,
            DiagnosticDescriptors.NoTargets);

        /// <inheritdoc/>
        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterSymbolAction(AnalyzeType, SymbolKind.NamedType);
        }

        private static void AnalyzeType(SymbolAnalysisContext context)
        {
            if (context.Symbol is not INamedTypeSymbol type || PeftClassView.Create(type) is not { } view || view.ClassAdapters.Count == 0) return;
            var declared = new HashSet<string>(PeftClassView.DeclaredMembers(type).Select(m => m.Name), StringComparer.Ordinal);

            foreach (var (attribute, known) in view.ClassAdapters)
            {
                List<string>? targets = PeftClassView.TargetList(attribute);
                if (targets is null || targets.Count == 0)
                {
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.NoTargets,
                        AttributeArguments.AttributeLocation(attribute, context.CancellationToken), view.FullName, known.Method));
                    continue;
                }

                foreach (string target in targets.Distinct(StringComparer.Ordinal))
                {
                    if (declared.Contains(target)) continue;
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.UnknownTarget,
                        AttributeArguments.TargetLocation(attribute, target, context.CancellationToken), view.FullName, known.Method, target));
                }
            }
        }
    }
}
