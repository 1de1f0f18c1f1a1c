using System.Collections.Immutable;
using System.Composition;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>PEFT003: removes <c>readonly</c> from the adapter field (the property form, without a setter, has no automatic fix).</summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(RemoveReadonlyCodeFix)), Shared]
    public sealed class RemoveReadonlyCodeFix : CodeFixProvider
    {
        /// <inheritdoc/>
        public override ImmutableArray<string> FixableDiagnosticIds { get; } = ImmutableArray.Create(DiagnosticIds.ReadOnlyMember);

        /// <inheritdoc/>
        public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        /// <inheritdoc/>
        public override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            SyntaxNode? root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            if (root is null) return;
            foreach (Diagnostic diagnostic in context.Diagnostics)
            {
                SyntaxToken token = root.FindToken(diagnostic.Location.SourceSpan.Start);
                if (!token.IsKind(SyntaxKind.ReadOnlyKeyword) || token.Parent is not FieldDeclarationSyntax field) continue;
                context.RegisterCodeFix(
                    CodeAction.Create("Remove readonly", cancellationToken => Remove(context.Document, field, cancellationToken), equivalenceKey: nameof(RemoveReadonlyCodeFix)),
                    diagnostic);
            }
        }

        private static async Task<Document> Remove(Document document, FieldDeclarationSyntax field, CancellationToken cancellationToken)
        {
            SyntaxNode? root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            if (root is null) return document;

            SyntaxTokenList modifiers = field.Modifiers;
            int index = modifiers.IndexOf(SyntaxKind.ReadOnlyKeyword);
            if (index < 0) return document;
            SyntaxToken removed = modifiers[index];
            modifiers = modifiers.RemoveAt(index);

            FieldDeclarationSyntax updated;
            if (index < modifiers.Count)
            {
                // The next modifier moves into readonly's place and takes its leading trivia.
                modifiers = modifiers.Replace(modifiers[index], modifiers[index].WithLeadingTrivia(removed.LeadingTrivia));
                updated = field.WithModifiers(modifiers);
            }
            else if (modifiers.Count > 0)
            {
                updated = field.WithModifiers(modifiers);
            }
            else
            {
                // readonly was the only modifier: the type now starts the declaration.
                updated = field.WithModifiers(modifiers)
                    .WithDeclaration(field.Declaration.WithType(field.Declaration.Type.WithLeadingTrivia(removed.LeadingTrivia)));
            }

            return document.WithSyntaxRoot(root.ReplaceNode(field, updated));
        }
    }
}
