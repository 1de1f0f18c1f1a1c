namespace Peft.Generators.Model
{
    /// <summary>Everything the emitter needs for one annotated class: strings and numbers only.</summary>
    /// <param name="HintName">The generated file's name, <c>Namespace.Class.Peft.g.cs</c>.</param>
    /// <param name="Namespace">The class's namespace, or null for the global namespace.</param>
    /// <param name="ContainingTypes">The enclosing types, outermost first.</param>
    /// <param name="Type">The class itself.</param>
    /// <param name="FullName">The class's full name as shown to users, e.g. <c>Demo.Block</c>.</param>
    /// <param name="IsPeftModel">Whether the class carries <c>[PeftModel]</c>.</param>
    /// <param name="Sites">The adapters to wire, in the order the Wrap calls run.</param>
    /// <param name="TrainableMembers">The component names of the <c>[Trainable]</c> members.</param>
    /// <param name="Components">C# expressions naming the <c>PeftInfo</c> of annotated member types.</param>
    /// <param name="HiddenNames">Generated member names that hide an accessible inherited member (they get <c>new</c>).</param>
    /// <param name="BaseModelName"><c>[PeftModel(BaseModelName = ...)]</c>, or null.</param>
    /// <param name="TaskType"><c>[PeftModel(TaskType = ...)]</c>, or null.</param>
    /// <param name="Merges">The <c>Merge{Name}()</c> methods, from valid <c>[MergeWith]</c> attributes, in declaration order.</param>
    internal sealed record ClassModel(
        string HintName,
        string? Namespace,
        EquatableArray<TypeDeclarationModel> ContainingTypes,
        TypeDeclarationModel Type,
        string FullName,
        bool IsPeftModel,
        EquatableArray<AdapterSiteModel> Sites,
        EquatableArray<string> TrainableMembers,
        EquatableArray<string> Components,
        EquatableArray<string> HiddenNames,
        string? BaseModelName = null,
        string? TaskType = null,
        EquatableArray<MergeModel> Merges = default);

    /// <summary>One <c>[MergeWith]</c>: a generated <c>Merge{Name}()</c>.</summary>
    /// <param name="MethodName">The generated method's name, e.g. <c>MergeMathCode</c>.</param>
    /// <param name="Name">The new adapter's name, e.g. <c>math_code</c>.</param>
    /// <param name="Adapters">The source adapters, in order.</param>
    /// <param name="Method">The <c>Peft.MergeMethod</c> member's name, e.g. <c>Ties</c>.</param>
    /// <param name="Weights">The weights as a C# array expression, or null when not given.</param>
    /// <param name="Density">The density as a C# literal, or null when not given.</param>
    /// <param name="Rank">The target rank (0: the default).</param>
    /// <param name="Seed">DARE's and LoRA-LEGO's seed.</param>
    /// <param name="Space">The <c>Peft.MergeSpace</c> member's name, <c>Full</c> or <c>Core</c>.</param>
    /// <param name="CommonFraction">Iso-CTS's common fraction as a C# literal, or null when not given.</param>
    /// <param name="Member">The component name of the member carrying the attribute, or null on the class.</param>
    /// <param name="Members">For a class that is not a <c>[PeftModel]</c> root: the component names of its own members to merge on.</param>
    /// <param name="Summary">The XML doc summary, escaped.</param>
    internal sealed record MergeModel(
        string MethodName,
        string Name,
        EquatableArray<string> Adapters,
        string Method,
        string? Weights,
        string? Density,
        int Rank,
        int Seed,
        string Space,
        string? CommonFraction,
        string? Member,
        EquatableArray<string> Members,
        string Summary);

    /// <summary>A partial type declaration header.</summary>
    /// <param name="Keyword"><c>class</c>, <c>struct</c>, <c>interface</c>, <c>record</c> or <c>record struct</c>.</param>
    /// <param name="Name">The name with its type parameter list, e.g. <c>Box&lt;T&gt;</c>.</param>
    internal sealed record TypeDeclarationModel(string Keyword, string Name);

    /// <summary>One adapter on one member.</summary>
    /// <param name="MemberName">The member's C# name as written in code (<c>@</c>-escaped where needed).</param>
    /// <param name="ComponentName">The member's TorchSharp component name (<c>[ComponentName]</c> or the member name).</param>
    /// <param name="Path">The path handed to the runtime for messages, e.g. <c>Demo.Block.q</c>.</param>
    /// <param name="NullableMember">Whether the member is declared nullable (the argument then gets <c>!</c>).</param>
    /// <param name="Method">The adapter method, e.g. <c>LoRA</c>.</param>
    /// <param name="AdapterName">The adapter's name, e.g. <c>default</c>.</param>
    /// <param name="OptionsText">The attribute's arguments as written, minus Name and Targets.</param>
    /// <param name="Options">The option assignments, in argument order.</param>
    /// <param name="InFeatures">The base layer's input size when the compiler can see it.</param>
    /// <param name="OutFeatures">The base layer's output size when the compiler can see it.</param>
    internal sealed record AdapterSiteModel(
        string MemberName,
        string ComponentName,
        string Path,
        bool NullableMember,
        string Method,
        string AdapterName,
        string OptionsText,
        EquatableArray<OptionModel> Options,
        long? InFeatures,
        long? OutFeatures);

    /// <summary>One property assignment in the options initializer: <c>Rank = 4</c>.</summary>
    internal sealed record OptionModel(string Property, string Value);
}
