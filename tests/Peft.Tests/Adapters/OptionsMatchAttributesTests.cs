using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Xunit;

namespace Peft.Tests.Adapters;

/// <summary>
/// Each adapter attribute of the DSL (<c>[LoRA]</c>, <c>[Bone]</c>, ...) and the runtime's options record of the same
/// method (<c>LoRAOptions</c>, <c>BoneOptions</c>, ...) describe one adapter: the generator copies the attribute's
/// properties into the record by name, and a property the user leaves out takes the record's default. So the two must
/// agree on names, types and defaults; nothing else checks that <c>[LoRA].Alpha</c>'s default is the runtime's.
/// </summary>
public class OptionsMatchAttributesTests
{
    /// <summary>Attributes of the DSL that are not adapter methods.</summary>
    private static readonly HashSet<Type> NotMethods = new()
    {
        typeof(PeftModelAttribute), typeof(TrainableAttribute), typeof(MergeWithAttribute),
    };

    /// <summary>Attribute properties that name or place the adapter rather than configure it.</summary>
    private static readonly HashSet<string> SiteProperties = new(StringComparer.Ordinal) { "Name", "Targets", "TypeId" };

    /// <summary>
    /// Record properties with no attribute counterpart: read from files only, at PEFT's default otherwise.
    /// Anything not listed here must be declarable through the attribute.
    /// </summary>
    private static readonly Dictionary<Type, string[]> FileOnly = new()
    {
        [typeof(VeRAOptions)] = new[] { nameof(VeRAOptions.InitialLambdaD) },
        [typeof(AdaLoRAOptions)] = new[] { nameof(AdaLoRAOptions.RankPattern) }, // the masks, set by training or a file
        [typeof(RandLoRAOptions)] = new[] { nameof(RandLoRAOptions.Sparse), nameof(RandLoRAOptions.VerySparse) },
    };

    /// <summary>Every adapter attribute of the DSL, found by reflection, so a new method is checked without an entry here.</summary>
    public static TheoryData<string> Methods()
    {
        var data = new TheoryData<string>();
        foreach (var type in AdapterAttributes()) data.Add(type.Name);
        return data;
    }

    private static IEnumerable<Type> AdapterAttributes() =>
        typeof(LoRAAttribute).Assembly.GetExportedTypes()
            .Where(t => typeof(Attribute).IsAssignableFrom(t) && !NotMethods.Contains(t))
            .OrderBy(t => t.Name, StringComparer.Ordinal);

    [Fact]
    public void EveryFirstWaveMethodIsFound()
    {
        var names = AdapterAttributes().Select(t => t.Name).ToArray();
        foreach (var method in new[] { "LoRA", "DoRA", "Bone", "Hydra", "VeRA", "LoHa", "LoKr", "IA3" })
            Assert.Contains(method + "Attribute", names);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void AttributeAndOptionsAgreeOnNamesTypesAndDefaults(string attributeName)
    {
        var attributeType = AdapterAttributes().Single(t => t.Name == attributeName);
        string method = attributeName[..^"Attribute".Length];
        var optionsType = typeof(LoRAOptions).Assembly.GetType($"Peft.Runtime.Adapters.{method}Options")
            ?? throw new Xunit.Sdk.XunitException($"[{method}] has no runtime record Peft.Runtime.Adapters.{method}Options");
        Assert.True(typeof(AdapterSettings).IsAssignableFrom(optionsType), $"{optionsType.Name} is not the method's AdapterSettings");

        // One public constructor; its parameters are the attribute's get-only properties (rank: Rank, block: Block).
        var ctor = Assert.Single(attributeType.GetConstructors());
        var args = ctor.GetParameters().Select((p, i) => (object)(p.ParameterType == typeof(int) ? 4 + i : Activator.CreateInstance(p.ParameterType)!)).ToArray();
        var attribute = ctor.Invoke(args);
        var options = Activator.CreateInstance(optionsType)!;

        var attributeProperties = attributeType.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => !SiteProperties.Contains(p.Name)).ToList();
        var recordProperties = optionsType.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.SetMethod is { IsPublic: true }).ToDictionary(p => p.Name, StringComparer.Ordinal);

        foreach (var parameter in ctor.GetParameters())
        {
            string name = char.ToUpperInvariant(parameter.Name![0]) + parameter.Name[1..];
            var property = attributeProperties.SingleOrDefault(p => p.Name == name);
            Assert.True(property is not null && property.SetMethod is null, $"[{method}]'s constructor parameter '{parameter.Name}' should set the get-only property {name}");
            Assert.True(recordProperties.ContainsKey(name), $"[{method}]'s positional {name} has no init property in {optionsType.Name}");
            Assert.Equal(property!.GetValue(attribute), args[parameter.Position]);
        }

        foreach (var property in attributeProperties)
        {
            Assert.True(recordProperties.TryGetValue(property.Name, out var counterpart),
                $"[{method}].{property.Name} has no init property in {optionsType.Name}");
            Assert.True(property.PropertyType == counterpart!.PropertyType,
                $"[{method}].{property.Name} is {property.PropertyType.Name}, {optionsType.Name}.{property.Name} is {counterpart.PropertyType.Name}");
            if (property.SetMethod is null) continue; // positional: checked above, its default is PEFT's in the record
            Assert.True(Equals(property.GetValue(attribute), counterpart.GetValue(options)),
                $"[{method}].{property.Name} defaults to {property.GetValue(attribute)}, {optionsType.Name}.{property.Name} to {counterpart.GetValue(options)}");
        }

        var fileOnly = FileOnly.TryGetValue(optionsType, out var listed) ? listed : Array.Empty<string>();
        foreach (var name in recordProperties.Keys)
            Assert.True(attributeProperties.Any(p => p.Name == name) || fileOnly.Contains(name),
                $"{optionsType.Name}.{name} cannot be declared through [{method}]; add it to the attribute (or list it as file-only here)");
        foreach (var name in fileOnly)
            Assert.True(recordProperties.ContainsKey(name), $"{optionsType.Name} has no {name}");
    }
}
