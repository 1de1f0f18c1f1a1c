using System.Collections.Immutable;
using System.Composition;
using System.Globalization;
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
    /// <summary>
    /// PEFT006: offers the block sizes nearest to the written one that divide the layer (below and above, nearest
    /// first), as the analyzer found them; for a class-level attribute, blocks that divide every target of known shape.
    /// </summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(BoneBlockCodeFix)), Shared]
    public sealed class BoneBlockCodeFix : CodeFixProvider
    {
        /// <inheritdoc/>
        public override ImmutableArray<string> FixableDiagnosticIds { get; } = ImmutableArray.Create(DiagnosticIds.BlockDoesNotDivide);

        /// <inheritdoc/>
        public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        /// <inheritdoc/>
        public override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            SyntaxNode? root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            if (root is null) return;
            foreach (Diagnostic diagnostic in context.Diagnostics)
            {
                if (!diagnostic.Properties.TryGetValue(DiagnosticIds.BlockCandidatesProperty, out string? candidates) || string.IsNullOrEmpty(candidates)) continue;
                if (root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true) is not ExpressionSyntax written) continue;

                string[] blocks = candidates!.Split(',');
                for (int i = 0; i < blocks.Length; i++)
                {
                    if (!long.TryParse(blocks[i], NumberStyles.None, CultureInfo.InvariantCulture, out long block) || block > int.MaxValue) continue;
                    context.RegisterCodeFix(
                        CodeAction.Create(
                            "Use block " + block.ToString(CultureInfo.InvariantCulture),
                            cancellationToken => UseBlock(context.Document, written, (int)block, cancellationToken),
                            equivalenceKey: i == 0 ? "PEFT006.Nearest" : "PEFT006.Other"),
                        diagnostic);
                }
            }
        }

        private static async Task<Document> UseBlock(Document document, ExpressionSyntax written, int block, CancellationToken cancellationToken)
        {
            SyntaxNode? root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            if (root is null) return document;
            ExpressionSyntax literal = SyntaxFactory.LiteralExpression(SyntaxKind.NumericLiteralExpression, SyntaxFactory.Literal(block)).WithTriviaFrom(written);
            return document.WithSyntaxRoot(root.ReplaceNode(written, literal));
        }
    }
}
