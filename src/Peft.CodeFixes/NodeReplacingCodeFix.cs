using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;

namespace Peft.CodeFixes
{
    /// <summary>
    /// What every PeftDsl code fix shares: one diagnostic ID, batch fix-all, and fixes that each replace the one node
    /// the diagnostic points at. A fix says which node that is and what replaces it; this class registers the actions
    /// and applies them to the document.
    /// </summary>
    /// <typeparam name="TNode">The kind of node the fix rewrites.</typeparam>
    public abstract class NodeReplacingCodeFix<TNode> : CodeFixProvider where TNode : SyntaxNode
    {
        /// <summary>A fix for the diagnostic <paramref name="diagnosticId"/>.</summary>
        protected NodeReplacingCodeFix(string diagnosticId) => FixableDiagnosticIds = ImmutableArray.Create(diagnosticId);

        /// <inheritdoc/>
        public sealed override ImmutableArray<string> FixableDiagnosticIds { get; }

        /// <inheritdoc/>
        public sealed override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        /// <summary>The node the fix rewrites, or null where this occurrence has no automatic fix.</summary>
        protected abstract TNode? FindTarget(SyntaxNode root, Diagnostic diagnostic);

        /// <summary>The actions offered for <paramref name="target"/>, best first.</summary>
        protected abstract IEnumerable<Replacement> Replacements(TNode target, Diagnostic diagnostic);

        /// <inheritdoc/>
        public sealed override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            SyntaxNode? root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            if (root is null) return;
            foreach (Diagnostic diagnostic in context.Diagnostics)
            {
                if (FindTarget(root, diagnostic) is not { } target) continue;
                foreach (Replacement replacement in Replacements(target, diagnostic))
                {
                    context.RegisterCodeFix(
                        CodeAction.Create(replacement.Title, cancellationToken => Apply(context.Document, target, replacement, cancellationToken), replacement.EquivalenceKey),
                        diagnostic);
                }
            }
        }

        private static async Task<Document> Apply(Document document, TNode target, Replacement replacement, CancellationToken cancellationToken)
        {
            SyntaxNode? root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            SemanticModel? model = replacement.NeedsSemanticModel
                ? await document.GetSemanticModelAsync(cancellationToken).ConfigureAwait(false)
                : null;
            if (root is null || (replacement.NeedsSemanticModel && model is null)) return document;
            SyntaxNode? updated = replacement.Rewrite(target, model);
            return updated is null ? document : document.WithSyntaxRoot(root.ReplaceNode(target, updated));
        }

        /// <summary>One action: its title, its fix-all key, and the node that takes the target's place (null: none).</summary>
        protected sealed class Replacement
        {
            /// <param name="title">The action's title in the editor.</param>
            /// <param name="equivalenceKey">Actions with one key are fixed together by fix-all.</param>
            /// <param name="rewrite">The replacement for the target; the semantic model is null unless <paramref name="needsSemanticModel"/>.</param>
            /// <param name="needsSemanticModel">Whether <paramref name="rewrite"/> reads the semantic model.</param>
            public Replacement(string title, string equivalenceKey, Func<TNode, SemanticModel?, SyntaxNode?> rewrite, bool needsSemanticModel = false)
            {
                Title = title;
                EquivalenceKey = equivalenceKey;
                Rewrite = rewrite;
                NeedsSemanticModel = needsSemanticModel;
            }

            /// <summary>The action's title in the editor.</summary>
            public string Title { get; }

            /// <summary>Actions with one key are fixed together by fix-all.</summary>
            public string EquivalenceKey { get; }

            /// <summary>Builds the node that replaces the target.</summary>
            public Func<TNode, SemanticModel?, SyntaxNode?> Rewrite { get; }

            /// <summary>Whether <see cref="Rewrite"/> reads the semantic model.</summary>
            public bool NeedsSemanticModel { get; }
        }
    }
}
