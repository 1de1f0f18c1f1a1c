using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Peft.Generators.Model
{
    /// <summary>
    /// The parse step's output for one attribute application: the class's model, or the internal error that stopped
    /// the parser (reported as PEFT999 in the output step). Plain values only, so the pipeline stays cacheable.
    /// </summary>
    internal sealed record ParseResult(ClassModel? Model, InternalErrorModel? Error)
    {
        public static ParseResult? Of(ClassModel? model) => model is null ? null : new ParseResult(model, null);
    }

    /// <summary>An exception the parser caught: where, on which class, and what (type, message, first stack frame).</summary>
    internal sealed record InternalErrorModel(string ClassName, string Exception, LocationModel? Location);

    /// <summary>A source location as values (a <see cref="Location"/> would pin the compilation in the cache).</summary>
    internal sealed record LocationModel(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
    {
        public static LocationModel? From(Location location) =>
            location.SourceTree is null ? null : new LocationModel(location.SourceTree.FilePath, location.SourceSpan, location.GetLineSpan().Span);

        public Location ToLocation() => Location.Create(FilePath, Span, LineSpan);
    }
}
