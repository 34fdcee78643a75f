using System.Globalization;

namespace ResearchFramework.Host.Data;

/// <summary>Reader for the UCI Semeion handwritten digits text format:
/// per line 256 pixel values (16×16, 0/1, possibly written as 0.0000/1.0000) then 10 one-hot label values.</summary>
public static class SemeionReader
{
    /// <summary>Pixels per image (16×16).</summary>
    public const int PixelCount = 256;

    /// <summary>Reads the file into a 1×16×16 dataset with 10 classes.</summary>
    public static Dataset Read(string path, string name = "semeion")
    {
        var bytes = FileBytes.ReadAll(path);
        var text = System.Text.Encoding.ASCII.GetString(bytes);
        var images = new List<float>();
        var labels = new List<int>();
        int offset = 0;
        foreach (var rawLine in text.Split('\n'))
        {
            int lineOffset = offset;
            offset += rawLine.Length + 1;
            var line = rawLine.Trim();
            if (line.Length == 0) continue;
            var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length != PixelCount + 10)
                throw new DataFormatException(path, lineOffset, $"{PixelCount + 10} values on the line", $"{fields.Length} values");
            for (int i = 0; i < PixelCount; i++)
                images.Add(Parse(path, lineOffset, fields[i], "pixel value 0 or 1"));
            int label = -1;
            for (int c = 0; c < 10; c++)
            {
                if (Parse(path, lineOffset, fields[PixelCount + c], "one-hot label value 0 or 1") != 1f) continue;
                if (label >= 0)
                    throw new DataFormatException(path, lineOffset, "exactly one label value equal to 1", "several");
                label = c;
            }
            if (label < 0)
                throw new DataFormatException(path, lineOffset, "exactly one label value equal to 1", "none");
            labels.Add(label);
        }
        if (labels.Count == 0)
            throw new DataFormatException(path, 0, "at least one record", "no records");
        return new Dataset(name, images.ToArray(), labels.ToArray(), 10, 1, 16, 16);
    }

    private static float Parse(string path, int lineOffset, string field, string expected)
    {
        if (!double.TryParse(field, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || (v != 0 && v != 1))
            throw new DataFormatException(path, lineOffset, expected, $"'{field}'");
        return (float)v;
    }
}
