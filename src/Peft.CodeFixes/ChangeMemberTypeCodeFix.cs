using System.Collections.Generic;
using System.Composition;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Formatting;
using Microsoft.CodeAnalysis.Simplification;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>PEFT002: declares the adapter field or property as <c>Module&lt;Tensor, Tensor&gt;</c>, written as short as the file's usings allow.</summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(ChangeMemberTypeCodeFix)), Shared]
    public sealed class ChangeMemberTypeCodeFix : NodeReplacingCodeFix<TypeSyntax>
    {
        /// <summary>The fix, registered for its diagnostic.</summary>
        public ChangeMemberTypeCodeFix() : base(DiagnosticIds.MemberCannotHoldAdapter) { }

        /// <inheritdoc/>
        /// <remarks>Only the "wrong type" form of PEFT002 is reported on the member's type; static or indexer members are not.</remarks>
        protected override TypeSyntax? FindTarget(SyntaxNode root, Diagnostic diagnostic) =>
            root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: false) is TypeSyntax { Parent: VariableDeclarationSyntax or PropertyDeclarationSyntax } type
                ? type
                : null;

        /// <inheritdoc/>
        protected override IEnumerable<Replacement> Replacements(TypeSyntax target, Diagnostic diagnostic)
        {
            yield return new Replacement("Declare it as Module<Tensor, Tensor>", nameof(ChangeMemberTypeCodeFix), (type, model) => ModuleType(type, model!), needsSemanticModel: true);
        }

        private static TypeSyntax ModuleType(TypeSyntax type, SemanticModel model)
        {
            TypeSyntax replacement;
            INamedTypeSymbol? module = model.Compilation.GetTypeByMetadataName("TorchSharp.torch+nn+Module`2");
            INamedTypeSymbol? tensor = model.Compilation.GetTypeByMetadataName("TorchSharp.torch+Tensor");
            if (module is not null && tensor is not null)
            {
                replacement = SyntaxFactory.ParseTypeName(module.Construct(tensor, tensor).ToMinimalDisplayString(model, type.SpanStart));
            }
            else
            {
                replacement = SyntaxFactory.ParseTypeName("global::TorchSharp.torch.nn.Module<global::TorchSharp.torch.Tensor, global::TorchSharp.torch.Tensor>")
                    .WithAdditionalAnnotations(Simplifier.Annotation);
            }

            if (type is NullableTypeSyntax) replacement = SyntaxFactory.NullableType(replacement);
            return replacement.WithTriviaFrom(type).WithAdditionalAnnotations(Formatter.Annotation);
        }
    }
}
