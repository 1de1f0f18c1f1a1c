using System.Collections.Immutable;
using System.Composition;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
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
    public sealed class ChangeMemberTypeCodeFix : CodeFixProvider
    {
        private const string Title = "Declare it as Module<Tensor, Tensor>";

        /// <inheritdoc/>
        public override ImmutableArray<string> FixableDiagnosticIds { get; } = ImmutableArray.Create(DiagnosticIds.MemberCannotHoldAdapter);

        /// <inheritdoc/>
        public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        /// <inheritdoc/>
        public override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            SyntaxNode? root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            if (root is null) return;
            foreach (Diagnostic diagnostic in context.Diagnostics)
            {
                // Only the "wrong type" form of PEFT002 is reported on the member's type; static or indexer members are not.
                if (root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: false) is not TypeSyntax type
                    || type.Parent is not (VariableDeclarationSyntax or PropertyDeclarationSyntax))
                    continue;
                context.RegisterCodeFix(
                    CodeAction.Create(Title, cancellationToken => ChangeType(context.Document, type, cancellationToken), equivalenceKey: nameof(ChangeMemberTypeCodeFix)),
                    diagnostic);
            }
        }

        private static async Task<Document> ChangeType(Document document, TypeSyntax type, CancellationToken cancellationToken)
        {
            SyntaxNode? root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            SemanticModel? model = await document.GetSemanticModelAsync(cancellationToken).ConfigureAwait(false);
            if (root is null || model is null) return document;

            bool nullable = type is NullableTypeSyntax;
            TypeSyntax replacement;
            INamedTypeSymbol? module = model.Compilation.GetTypeByMetadataName("TorchSharp.torch+nn+Module`2");
            INamedTypeSymbol? tensor = model.Compilation.GetTypeByMetadataName("TorchSharp.torch+Tensor");
            if (module is not null && tensor is not null)
            {
                string shown = module.Construct(tensor, tensor).ToMinimalDisplayString(model, type.SpanStart);
                replacement = SyntaxFactory.ParseTypeName(shown);
            }
            else
            {
                replacement = SyntaxFactory.ParseTypeName("global::TorchSharp.torch.nn.Module<global::TorchSharp.torch.Tensor, global::TorchSharp.torch.Tensor>")
                    .WithAdditionalAnnotations(Simplifier.Annotation);
            }

            if (nullable) replacement = SyntaxFactory.NullableType(replacement);
            replacement = replacement.WithTriviaFrom(type).WithAdditionalAnnotations(Formatter.Annotation);
            return document.WithSyntaxRoot(root.ReplaceNode(type, replacement));
        }
    }
}
