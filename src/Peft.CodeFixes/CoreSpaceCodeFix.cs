using System.Collections.Generic;
using System.Composition;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Formatting;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>PEFT034: adds <c>Space = MergeSpace.Core</c> to the <c>[MergeWith]</c> (replacing a <c>Space = ...</c> already written).</summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(CoreSpaceCodeFix)), Shared]
    public sealed class CoreSpaceCodeFix : NodeReplacingCodeFix<AttributeSyntax>
    {
        /// <summary>The fix, registered for its diagnostic.</summary>
        public CoreSpaceCodeFix() : base(DiagnosticIds.FullRankMerge) { }

        /// <inheritdoc/>
        /// <remarks>Reported on the Method argument (or the attribute): the attribute around it.</remarks>
        protected override AttributeSyntax? FindTarget(SyntaxNode root, Diagnostic diagnostic) =>
            root.FindNode(diagnostic.Location.SourceSpan).AncestorsAndSelf().OfType<AttributeSyntax>().FirstOrDefault();

        /// <inheritdoc/>
        protected override IEnumerable<Replacement> Replacements(AttributeSyntax target, Diagnostic diagnostic)
        {
            yield return new Replacement("Merge in core space (Space = MergeSpace.Core)", nameof(CoreSpaceCodeFix), (attribute, _) => AddSpace(attribute));
        }

        private static AttributeSyntax AddSpace(AttributeSyntax attribute)
        {
            AttributeArgumentSyntax space = SyntaxFactory.AttributeArgument(
                SyntaxFactory.NameEquals(SyntaxFactory.IdentifierName("Space")), null,
                SyntaxFactory.MemberAccessExpression(SyntaxKind.SimpleMemberAccessExpression, SyntaxFactory.IdentifierName("MergeSpace"), SyntaxFactory.IdentifierName("Core")));
            AttributeArgumentListSyntax list = attribute.ArgumentList ?? SyntaxFactory.AttributeArgumentList();
            AttributeArgumentSyntax? existing = list.Arguments.FirstOrDefault(a => a.NameEquals?.Name.Identifier.ValueText == "Space");
            list = existing is null ? list.AddArguments(space) : list.ReplaceNode(existing, space.WithTriviaFrom(existing));
            return attribute.WithArgumentList(list).WithAdditionalAnnotations(Formatter.Annotation);
        }
    }
}
