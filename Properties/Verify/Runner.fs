/// The verification mode of the property runner (`Properties --verify …`, launched by `rf verify`): the suite's own
/// FsCheck properties, chosen by group or filter, run in batches far beyond their CI case counts, with a report, a
/// resumable state and saved, replayable failures.
///
/// Batches. Property p with CI count c (its `Seeds.config` maxTest) gets a target of k·c cases (`--cases kx`), n cases
/// (`--cases n`) or no limit (`--time` alone), in batches of `--batch` cases (default c: one batch = one CI run). Batch b
/// of p runs with FsCheck's replay seed (seed, gamma) = splitmix64 of (master seed, FNV-1a of p's name, b): it is
/// fixed by the master seed, p and b alone, whatever ran before it, so a run resumed after a kill (which skips the
/// batches recorded in `batches.jsonl`) runs exactly the cases of an uninterrupted one. Batches go round-robin over
/// the properties (batch 0 of every property, then batch 1, …), so a time budget spreads over all of them.
///
/// Device and shapes come from the environment the process starts with (`RF_TEST_DEVICE`, `RF_SIZE_SCALE`), as in
/// the CI runner; `rf verify` sets them per device.
module ResearchFramework.Properties.Verify.Runner

open System
open System.Diagnostics
open System.Globalization
open System.IO
open System.Text
open System.Text.Json
open System.Text.Json.Nodes
open ResearchFramework.Properties

let private inv = CultureInfo.InvariantCulture

/// The case budget of each property.
type Cases =
    /// k times the property's CI case count (`--cases 10x`).
    | Multiple of float
    /// n cases (`--cases 500`).
    | Absolute of int
    /// No case limit: the time budget ends the run (`--time` without `--cases`).
    | Unlimited

/// What fixes the cases of a run: a resume must have the same plan.
type Plan =
    { MasterSeed: int64
      Filters: string list
      Cases: Cases
      Batch: int option
      SizeScale: float
      Devices: string list }

/// The groups `--filter` knows by name (any other filter is a substring of the full property name).
let groups =
    [ "MathCore", [ "MathCore" ]
      "Algorithm", [ "Algorithm"; "ReadoutTheorem" ]
      "Proofs", [ "Proofs" ]
      "Differential", [ "Differential" ]
      "Foundation", [ "Foundation" ] ]

/// Whether a property's full name is selected by the filters.
let selected (filters: string list) (name: string) =
    filters
    |> List.exists (fun f ->
        match groups |> List.tryFind (fun (g, _) -> String.Equals(g, f, StringComparison.OrdinalIgnoreCase)) with
        | Some (_, prefixes) -> prefixes |> List.exists (fun p -> name.StartsWith(p + ".") || name.StartsWith(p + "/"))
        | None -> name.Contains(f, StringComparison.Ordinal))

let private fnv1a (text: string) =
    let mutable h = 14695981039346656037UL
    for b in Encoding.UTF8.GetBytes text do
        h <- (h ^^^ uint64 b) * 1099511628211UL
    h

let private splitmix (x: uint64) =
    let mutable z = x + 0x9E3779B97F4A7C15UL
    z <- (z ^^^ (z >>> 30)) * 0xBF58476D1CE4E5B9UL
    z <- (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
    z ^^^ (z >>> 31)

/// FsCheck's replay seed (seed, gamma; gamma odd) of batch `batch` of property `name` under the master seed.
let batchSeed (master: int64) (name: string) (batch: int) =
    let seed = splitmix (splitmix (uint64 master) ^^^ fnv1a name ^^^ splitmix (0x5EED0000UL + uint64 batch))
    seed, splitmix seed ||| 1UL

/// The target case count of a property with CI count `ci` (None: unlimited).
let target (plan: Plan) (ci: int) =
    match plan.Cases with
    | Multiple k -> Some (max 1 (int (Math.Round(k * float ci))))
    | Absolute n -> Some n
    | Unlimited -> None

/// Cases per batch of a property with CI count `ci`.
let batchSize (plan: Plan) (ci: int) = defaultArg plan.Batch (max 1 ci)

/// One finished batch, as a line of `batches.jsonl`.
type BatchRecord =
    { Property: string
      Device: string
      Batch: int
      Seed: uint64
      Gamma: uint64
      Cases: int
      NonVacuous: int option
      Fraction: float option
      WallSeconds: float
      Shapes: (string * int) list
      Digest: string
      Failed: bool
      FailureFile: string option }

let private recordToJson (r: BatchRecord) =
    let shapes = JsonObject()
    for k, v in r.Shapes do shapes[k] <- JsonValue.Create v
    let o = JsonObject()
    o["property"] <- JsonValue.Create r.Property
    o["device"] <- JsonValue.Create r.Device
    o["batch"] <- JsonValue.Create r.Batch
    o["seed"] <- JsonValue.Create(string r.Seed)
    o["gamma"] <- JsonValue.Create(string r.Gamma)
    o["cases"] <- JsonValue.Create r.Cases
    o["nonVacuous"] <- (match r.NonVacuous with Some n -> JsonValue.Create n :> JsonNode | None -> null)
    o["fraction"] <- (match r.Fraction with Some f -> JsonValue.Create f :> JsonNode | None -> null)
    o["wallSeconds"] <- JsonValue.Create(Math.Round(r.WallSeconds, 3))
    o["shapes"] <- shapes
    o["digest"] <- JsonValue.Create r.Digest
    o["failed"] <- JsonValue.Create r.Failed
    o["failureFile"] <- (match r.FailureFile with Some f -> JsonValue.Create f :> JsonNode | None -> null)
    o

let private recordOfJson (o: JsonNode) =
    let opt (key: string) (f: JsonNode -> 'a) = match o[key] with null -> None | n -> Some (f n)
    { Property = o["property"].GetValue<string>()
      Device = o["device"].GetValue<string>()
      Batch = o["batch"].GetValue<int>()
      Seed = UInt64.Parse(o["seed"].GetValue<string>(), inv)
      Gamma = UInt64.Parse(o["gamma"].GetValue<string>(), inv)
      Cases = o["cases"].GetValue<int>()
      NonVacuous = opt "nonVacuous" (fun n -> n.GetValue<int>())
      Fraction = opt "fraction" (fun n -> n.GetValue<float>())
      WallSeconds = o["wallSeconds"].GetValue<float>()
      Shapes = o["shapes"].AsObject() |> Seq.map (fun kv -> kv.Key, kv.Value.GetValue<int>()) |> List.ofSeq
      Digest = o["digest"].GetValue<string>()
      Failed = o["failed"].GetValue<bool>()
      FailureFile = opt "failureFile" (fun n -> n.GetValue<string>()) }

/// The records of `batches.jsonl` (a line cut short by a kill is ignored: its batch runs again).
let readRecords (path: string) =
    if not (File.Exists path) then []
    else
        File.ReadAllLines path
        |> Array.choose (fun line ->
            if String.IsNullOrWhiteSpace line then None
            else try Some (recordOfJson (JsonNode.Parse line)) with _ -> None)
        |> List.ofArray

/// JSON as people read it: names with Greek letters and quotes stay as they are (a failure file's regression line is
/// copied from it), not \uXXXX escapes.
let private indented = JsonSerializerOptions(WriteIndented = true, Encoder = Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)
let private compact = JsonSerializerOptions(Encoder = Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)

let private writeAtomically (path: string) (text: string) =
    let tmp = path + ".tmp"
    File.WriteAllText(tmp, text)
    File.Move(tmp, path, true)

let private casesText =
    function
    | Multiple k -> k.ToString("R", inv) + "x"
    | Absolute n -> string n
    | Unlimited -> "unlimited"

let private planToJson (plan: Plan) =
    let o = JsonObject()
    o["masterSeed"] <- JsonValue.Create plan.MasterSeed
    o["filters"] <- JsonArray(plan.Filters |> List.map (fun f -> JsonValue.Create f :> JsonNode) |> Array.ofList)
    o["cases"] <- JsonValue.Create(casesText plan.Cases)
    o["batch"] <- (match plan.Batch with Some b -> JsonValue.Create b :> JsonNode | None -> null)
    o["sizeScale"] <- JsonValue.Create plan.SizeScale
    o["devices"] <- JsonArray(plan.Devices |> List.map (fun f -> JsonValue.Create f :> JsonNode) |> Array.ofList)
    o

/// Parses a case budget: `10x` (a multiple of the CI counts), `500` (cases per property), `unlimited`.
let parseCases (text: string) =
    let t = text.Trim()
    if t = "unlimited" then Ok Unlimited
    elif t.EndsWith "x" || t.EndsWith "X" then
        match Double.TryParse(t.[.. t.Length - 2], NumberStyles.Float, inv) with
        | true, k when k > 0.0 && Double.IsFinite k -> Ok (Multiple k)
        | _ -> Error (sprintf "--cases %s: expected a positive multiple of the CI counts (e.g. 10x) or a case count (e.g. 500)" text)
    else
        match Int32.TryParse(t, NumberStyles.Integer, inv) with
        | true, n when n > 0 -> Ok (Absolute n)
        | _ -> Error (sprintf "--cases %s: expected a positive multiple of the CI counts (e.g. 10x) or a case count (e.g. 500)" text)

/// Parses a duration: `90s`, `30m`, `8h`, `1d`, or plain seconds.
let parseDuration (text: string) =
    let t = text.Trim()
    let unit, number =
        match if t.Length > 0 then t.[t.Length - 1] else ' ' with
        | 's' -> 1.0, t.[.. t.Length - 2]
        | 'm' -> 60.0, t.[.. t.Length - 2]
        | 'h' -> 3600.0, t.[.. t.Length - 2]
        | 'd' -> 86400.0, t.[.. t.Length - 2]
        | _ -> 1.0, t
    match Double.TryParse(number, NumberStyles.Float, inv) with
    | true, x when x > 0.0 && Double.IsFinite x -> Ok (x * unit)
    | _ -> Error (sprintf "--time %s: expected a duration such as 90s, 30m, 8h" text)

let private planOfJson (o: JsonNode) =
    { MasterSeed = o["masterSeed"].GetValue<int64>()
      Filters = o["filters"].AsArray() |> Seq.map (fun n -> n.GetValue<string>()) |> List.ofSeq
      Cases = (match parseCases (o["cases"].GetValue<string>()) with Ok c -> c | Error e -> failwith e)
      Batch = (match o["batch"] with null -> None | n -> Some (n.GetValue<int>()))
      SizeScale = o["sizeScale"].GetValue<float>()
      Devices = o["devices"].AsArray() |> Seq.map (fun n -> n.GetValue<string>()) |> List.ofSeq }

/// The `rf verify` command that starts this plan in `runDir`.
let commandOf (plan: Plan) (runDir: string) =
    let filters = plan.Filters |> List.map (fun f -> if f.Contains ' ' then sprintf "--filter \"%s\"" f else "--filter " + f)
    [ yield "rf verify"
      yield! filters
      if plan.Cases <> Unlimited then yield "--cases " + casesText plan.Cases
      match plan.Batch with Some b -> yield sprintf "--batch %d" b | None -> ()
      if plan.SizeScale <> 1.0 then yield "--size-scale " + plan.SizeScale.ToString("R", inv)
      yield "--device " + String.concat "," plan.Devices
      yield sprintf "--seed %d" plan.MasterSeed
      yield "--out " + runDir ]
    |> String.concat " "

/// A selected property, its CI count and its budget.
type Planned = { Property: Regressions.Property; Ci: int; Target: int option; BatchSize: int }

let private planned (plan: Plan) (p: Regressions.Property) =
    let ci = p.Config.maxTest
    { Property = p; Ci = ci; Target = target plan ci; BatchSize = batchSize plan ci }

/// Batches of a planned property (None: unlimited).
let batches (p: Planned) = p.Target |> Option.map (fun t -> (t + p.BatchSize - 1) / p.BatchSize)

/// Cases of batch b.
let casesOf (p: Planned) (b: int) =
    match p.Target with
    | Some t -> min p.BatchSize (t - b * p.BatchSize)
    | None -> p.BatchSize

/// The outcome of running one batch.
type Outcome =
    { Received: string list
      Error: exn option
      Seconds: float
      Shapes: (string * int) list
      NonVacuous: (int * float) option }

/// FNV-1a digest of the cases a batch generated (their arguments, in order).
let digest (received: string list) = (fnv1a (String.concat "\n" received)).ToString("x16")

/// Runs `cases` cases of the property from FsCheck replay seed (seed, gamma): the suite's own property and config
/// (its arbitrary seeds, its counting), only maxTest and the replay seed changed.
let runBatch (p: Regressions.Property) (seed: uint64, gamma: uint64) (cases: int) =
    Seeds.Observe.reset ()
    let received = Collections.Generic.List<string>()
    let config =
        { p.Config with
            maxTest = cases
            replay = Some (seed, gamma, None)
            receivedArgs = fun _ _ _ args -> async { received.Add(sprintf "%A" args) } }
    let clock = Stopwatch.StartNew()
    let error = try p.Run config |> Async.RunSynchronously; None with e -> Some e
    { Received = List.ofSeq received; Error = error; Seconds = clock.Elapsed.TotalSeconds
      Shapes = Seeds.Observe.shapes (); NonVacuous = Seeds.Observe.nonVacuousCount () }

/// The parts of FsCheck's failure message (as Expecto words it) that identify the failure: the number of tests, the
/// original arguments and the shrunk ones.
type FailureFacts =
    { FailedAfter: int option
      Original: string
      Shrunk: string option
      /// FsCheck's seed, gamma and size of the failing case itself ("Focus on error").
      Case: (uint64 * uint64 * int) option
      Message: string }

let failureFacts (e: exn) =
    let message = e.Message
    let lines = message.Split('\n') |> Array.map (fun l -> l.TrimEnd '\r')
    let after (marker: string -> bool) =
        lines |> Array.tryFindIndex marker |> Option.bind (fun i -> if i + 1 < lines.Length then Some (lines.[i + 1].Trim()) else None)
    let failedAfter =
        let m = RegularExpressions.Regex.Match(message, @"Failed after (\d+) tests?")
        if m.Success then Some (int m.Groups.[1].Value) else None
    let case =
        let m = RegularExpressions.Regex.Match(message, @"Focus on error:\s*\S+ \((\d+)UL, (\d+)UL, Some (\d+)\)")
        if m.Success then Some (UInt64.Parse(m.Groups.[1].Value, inv), UInt64.Parse(m.Groups.[2].Value, inv), int m.Groups.[3].Value)
        else None
    { FailedAfter = failedAfter
      Case = case
      Original = defaultArg (after (fun l -> l.TrimEnd().EndsWith "Parameters:")) ""
      Shrunk = after (fun l -> l.StartsWith "Shrunk ")
      Message = message }

let private slug (text: string) =
    let s = RegularExpressions.Regex.Replace(text, "[^A-Za-z0-9]+", "-").Trim('-')
    if s.Length > 60 then s.[.. 59].TrimEnd('-') else s

let private lastSegment (name: string) = name.Split('/') |> Array.last

let private quoteFs (s: string) = "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\""
let private quoteSh (s: string) = "'" + s.Replace("'", "'\\''") + "'"

/// Writes a failure file and returns its path relative to the run directory.
let private saveFailure (runDir: string) (plan: Plan) (device: string) (p: Planned) (b: int) (seed: uint64, gamma: uint64)
                        (cases: int) (outcome: Outcome) (facts: FailureFacts) =
    let dir = Path.Combine(runDir, "failures")
    Directory.CreateDirectory dir |> ignore
    let relative = Path.Combine("failures", sprintf "%s-%s-b%d.json" (slug p.Property.Name) device b)
    let path = Path.Combine(runDir, relative)
    let pinned =
        [ facts.Shrunk; Some facts.Original ]
        |> List.choose id
        |> List.tryPick (fun a -> match Int32.TryParse(a, NumberStyles.Integer, inv) with | true, s -> Some s | _ -> None)
    let regression =
        match pinned with
        | Some s -> sprintf "seed %s %d" (quoteFs p.Property.Name) s
        | None ->
            match facts.Case with
            | Some (s, g, size) -> sprintf "case %s (%dUL, %dUL, %d)" (quoteFs p.Property.Name) s g size
            | None -> "// no regression line: FsCheck gave no case seed; replay with rf verify --replay" 
    let env = [ if device <> "cpu" then yield "RF_TEST_DEVICE=" + device
                if plan.SizeScale <> 1.0 then yield "RF_SIZE_SCALE=" + plan.SizeScale.ToString("R", inv) ]
    let o = JsonObject()
    o["property"] <- JsonValue.Create p.Property.Name
    o["device"] <- JsonValue.Create device
    o["sizeScale"] <- JsonValue.Create plan.SizeScale
    o["masterSeed"] <- JsonValue.Create plan.MasterSeed
    o["batch"] <- JsonValue.Create b
    o["batchSeed"] <- JsonValue.Create(string seed)
    o["gamma"] <- JsonValue.Create(string gamma)
    o["batchCases"] <- JsonValue.Create cases
    o["failedAfter"] <- (match facts.FailedAfter with Some n -> JsonValue.Create n :> JsonNode | None -> null)
    o["original"] <- JsonValue.Create facts.Original
    o["shrunk"] <- (match facts.Shrunk with Some s -> JsonValue.Create s :> JsonNode | None -> null)
    o["shrinkNote"] <- JsonValue.Create(
        "the suite's properties draw an int seed without a shrinker (Seeds.FullRangeSeeds) and build the whole case from it, "
        + "so the seed is the minimal replay information; FsCheck's shrunk arguments are saved when it shrank")
    match facts.Case with
    | Some (s, g, size) ->
        let c = JsonObject()
        c["seed"] <- JsonValue.Create(string s)
        c["gamma"] <- JsonValue.Create(string g)
        c["size"] <- JsonValue.Create size
        o["case"] <- c
    | None -> ()
    o["digest"] <- JsonValue.Create(digest outcome.Received)
    o["message"] <- JsonValue.Create facts.Message
    o["replay"] <- JsonValue.Create(sprintf "rf verify --replay %s" (quoteSh path))
    o["regressionLine"] <- JsonValue.Create regression
    o["regressionFile"] <- JsonValue.Create "Properties/Verify/Regressions.fs"
    o["regressionHow"] <- JsonValue.Create(
        "paste regressionLine into the list of Properties/Verify/Regressions.fs: "
        + (match pinned with
           | Some _ -> "it runs this property on the one saved case (every int argument = the seed), as RF_REPLAY_SEED does"
           | None -> "it runs FsCheck's seed and size of the failing case: that one case"))
    match pinned with
    | Some s ->
        o["ciReplay"] <- JsonValue.Create(
            sprintf "%sRF_REPLAY_SEED=%d dotnet run --project Properties -c Release --no-build -- --filter-test-case %s"
                (env |> List.map (fun e -> e + " ") |> String.concat "") s (quoteSh (lastSegment p.Property.Name)))
    | None -> ()
    File.WriteAllText(path, o.ToJsonString(indented))
    relative

/// The regression line of a failure file.
let regressionLineOf (failureFile: string) =
    let node = JsonNode.Parse(File.ReadAllText failureFile)
    node["regressionLine"].GetValue<string>()

/// Per-property totals of a run.
type Totals =
    { Name: string
      Device: string
      Ci: int
      Target: int option
      BatchesDone: int
      BatchesPlanned: int option
      Cases: int
      NonVacuous: int option
      Minimum: int option
      Seconds: float
      Shapes: (string * int) list
      Failures: string list
      Status: string }

let private totalsOf (device: string) (p: Planned) (records: BatchRecord list) =
    let mine = records |> List.filter (fun r -> r.Property = p.Property.Name && r.Device = device)
    let cases = mine |> List.sumBy (fun r -> r.Cases)
    let counted = mine |> List.forall (fun r -> r.NonVacuous.IsSome) && not mine.IsEmpty
    let nonVacuous = if counted then Some (mine |> List.sumBy (fun r -> r.NonVacuous.Value)) else None
    let fraction = mine |> List.tryPick (fun r -> r.Fraction)
    let minimum = match fraction with Some f when counted -> Some (AlgorithmTests.Fixtures.minimumCases f cases) | _ -> None
    let shapes =
        mine |> List.collect (fun r -> r.Shapes) |> List.groupBy fst |> List.map (fun (k, vs) -> k, vs |> List.map snd |> List.max)
    let failures = mine |> List.choose (fun r -> r.FailureFile)
    let planned = batches p
    let finished = mine |> List.filter (fun r -> not r.Failed) |> List.length
    let status =
        if not failures.IsEmpty then "FAILED"
        elif (match nonVacuous, minimum with Some n, Some m -> n < m | _ -> false) then "VACUOUS"
        elif (match planned with Some n -> finished >= n | None -> false) then "passed"
        elif mine.IsEmpty then "not run"
        else "passed so far"
    { Name = p.Property.Name; Device = device; Ci = p.Ci; Target = p.Target; BatchesDone = mine.Length; BatchesPlanned = planned
      Cases = cases; NonVacuous = nonVacuous; Minimum = minimum; Seconds = mine |> List.sumBy (fun r -> r.WallSeconds)
      Shapes = shapes; Failures = failures; Status = status }

let private shapesText (shapes: (string * int) list) =
    if shapes.IsEmpty then "—" else shapes |> List.map (fun (k, v) -> sprintf "%s ≤ %d" k v) |> String.concat ", "

/// What the run covers beyond the property list (stated in the summary).
let private coverageNote (devices: string list) =
    sprintf "Devices run: %s (RF_TEST_DEVICE: the certificate and Algorithm properties compute on that device against the same CPU/MathNet/exact oracles). Precisions: as each property states — the certificate properties certify float64 matrices and, in \"float32 features certify the float32 matrix exactly as float64 input\", float32 ones; the trainer invariants run at the precision of their architecture (float64 MLPs, float32 LeNet-5/ResNet); the dtype axis is the Differential group (Properties/DifferentialTests.fs): its properties come once per precision (Differential/float32/…, Differential/float64/…): the certificate of features in that precision and a base run in it against the float64 CPU reference on the same rounded inputs, and the frozen-body readout invariants within the precision. Host/unit tests that are not FsCheck properties do not run in verify mode."
        (String.concat ", " devices)

/// Writes `summary.json` and `summary.md` from the plan and the records so far; returns the totals.
let writeSummary (runDir: string) (plan: Plan) (properties: Planned list) (records: BatchRecord list) (finished: bool) (started: DateTime) =
    let devices = records |> List.map (fun r -> r.Device) |> List.distinct
    let devices = if devices.IsEmpty then [ TestDevice.configName () ] else devices
    let totals = [ for d in devices do for p in properties -> totalsOf d p records ]
    let failures = totals |> List.collect (fun t -> t.Failures |> List.map (fun f -> t, f))
    let complete = totals |> List.forall (fun t -> t.Status = "passed" || t.Status = "FAILED" || t.Status = "VACUOUS")
    let o = JsonObject()
    o["command"] <- JsonValue.Create(commandOf plan runDir)
    o["resume"] <- JsonValue.Create(sprintf "rf verify --resume %s" runDir)
    o["plan"] <- planToJson plan
    o["startedUtc"] <- JsonValue.Create(started.ToString("O", inv))
    o["updatedUtc"] <- JsonValue.Create(DateTime.UtcNow.ToString("O", inv))
    o["finished"] <- JsonValue.Create finished
    o["complete"] <- JsonValue.Create complete
    o["totalCases"] <- JsonValue.Create(totals |> List.sumBy (fun t -> t.Cases))
    o["failureCount"] <- JsonValue.Create failures.Length
    o["coverage"] <- JsonValue.Create(coverageNote devices)
    let props = JsonArray()
    for t in totals do
        let p = JsonObject()
        p["property"] <- JsonValue.Create t.Name
        p["device"] <- JsonValue.Create t.Device
        p["status"] <- JsonValue.Create t.Status
        p["ciCases"] <- JsonValue.Create t.Ci
        p["targetCases"] <- (match t.Target with Some n -> JsonValue.Create n :> JsonNode | None -> null)
        p["batchesDone"] <- JsonValue.Create t.BatchesDone
        p["batchesPlanned"] <- (match t.BatchesPlanned with Some n -> JsonValue.Create n :> JsonNode | None -> null)
        p["cases"] <- JsonValue.Create t.Cases
        p["nonVacuous"] <- (match t.NonVacuous with Some n -> JsonValue.Create n :> JsonNode | None -> null)
        p["nonVacuousMinimum"] <- (match t.Minimum with Some n -> JsonValue.Create n :> JsonNode | None -> null)
        p["wallSeconds"] <- JsonValue.Create(Math.Round(t.Seconds, 3))
        let shapes = JsonObject()
        for k, v in t.Shapes do shapes[k] <- JsonValue.Create v
        p["largestShapes"] <- shapes
        p["failures"] <- JsonArray(t.Failures |> List.map (fun f -> JsonValue.Create f :> JsonNode) |> Array.ofList)
        props.Add p
    o["properties"] <- props
    let grid = JsonArray()
    for d in devices do
        let mine = totals |> List.filter (fun t -> t.Device = d)
        let g = JsonObject()
        g["device"] <- JsonValue.Create d
        g["properties"] <- JsonValue.Create mine.Length
        g["passed"] <- JsonValue.Create(mine |> List.filter (fun t -> t.Status = "passed") |> List.length)
        g["failedOrVacuous"] <- JsonValue.Create(mine |> List.filter (fun t -> t.Status = "FAILED" || t.Status = "VACUOUS") |> List.length)
        g["cases"] <- JsonValue.Create(mine |> List.sumBy (fun t -> t.Cases))
        grid.Add g
    o["devices"] <- grid
    let fails = JsonArray()
    for t, f in failures do
        let x = JsonObject()
        x["property"] <- JsonValue.Create t.Name
        x["device"] <- JsonValue.Create t.Device
        x["file"] <- JsonValue.Create f
        x["replay"] <- JsonValue.Create(sprintf "rf verify --replay %s" (quoteSh (Path.Combine(runDir, f))))
        fails.Add x
    o["failures"] <- fails
    writeAtomically (Path.Combine(runDir, "summary.json")) (o.ToJsonString(indented))
    let md = StringBuilder()
    let line (s: string) = md.Append(s).Append('\n') |> ignore
    line "# rf verify"
    line ""
    line (sprintf "- command: `%s`" (commandOf plan runDir))
    line (sprintf "- state: %s%s" (if finished then "finished" else "running")
              (if complete then ", every planned batch done" else sprintf " — continue with `rf verify --resume %s`" runDir))
    line (sprintf "- master seed %d, cases %s%s, size scale %s, started %s, updated %s"
              plan.MasterSeed (casesText plan.Cases)
              (match plan.Batch with Some b -> sprintf ", batches of %d" b | None -> " (batches of the CI count)")
              (plan.SizeScale.ToString("R", inv)) (started.ToString("u", inv)) (DateTime.UtcNow.ToString("u", inv)))
    line (sprintf "- %d cases, %d failures" (totals |> List.sumBy (fun t -> t.Cases)) failures.Length)
    line (sprintf "- coverage: %s" (coverageNote devices))
    for d in devices do
        let mine = totals |> List.filter (fun t -> t.Device = d)
        line (sprintf "- device %s: %d properties, %d passed, %d failed or vacuous, %d cases" d mine.Length
                  (mine |> List.filter (fun t -> t.Status = "passed") |> List.length)
                  (mine |> List.filter (fun t -> t.Status = "FAILED" || t.Status = "VACUOUS") |> List.length)
                  (mine |> List.sumBy (fun t -> t.Cases)))
    line ""
    line "| property | device | status | cases (CI) | batches | non-vacuous (min) | wall s | largest shapes |"
    line "|---|---|---|---|---|---|---|---|"
    for t in totals do
        line (sprintf "| %s | %s | %s | %d (%d) | %d/%s | %s | %.1f | %s |"
                  (t.Name.Replace("|", "\\|")) t.Device t.Status t.Cases t.Ci t.BatchesDone
                  (match t.BatchesPlanned with Some n -> string n | None -> "∞")
                  (match t.NonVacuous, t.Minimum with Some n, Some m -> sprintf "%d (%d)" n m | _ -> "—")
                  t.Seconds (shapesText t.Shapes))
    if not failures.IsEmpty then
        line ""
        line "## Failures"
        line ""
        for t, f in failures do
            line (sprintf "- %s [%s]: `%s` — replay: `rf verify --replay %s`" t.Name t.Device f (quoteSh (Path.Combine(runDir, f))))
            let regression = try regressionLineOf (Path.Combine(runDir, f)) with _ -> ""
            if regression <> "" then
                line "  regression test, one line for the list in `Properties/Verify/Regressions.fs`:"
                line "  ```fsharp"
                line ("  " + regression)
                line "  ```"
    writeAtomically (Path.Combine(runDir, "summary.md")) (md.ToString())
    totals

/// Exits at once when standard input closes: `rf verify` holds it open while it lives, so a killed rf never leaves
/// its runner behind (a batch cut short is simply run again on resume).
let private watchParent () =
    let thread =
        Threading.Thread((fun () ->
            try
                use input = Console.OpenStandardInput()
                let buffer = Array.zeroCreate<byte> 256
                while input.Read(buffer, 0, buffer.Length) > 0 do ()
            with _ -> ()
            eprintfn "verify: rf is gone; stopping (a resume continues from the last finished batch)"
            ResearchFramework.Host.Infrastructure.NativeProcess.ExitImmediately 137),
            IsBackground = true)
    thread.Start()

type private Args =
    { RunDir: string option
      Filters: string list
      Cases: string option
      Time: string option
      Batch: int option
      Seed: int64
      Devices: string list
      ParentWatch: bool
      Resume: bool }

let private usage = "usage: Properties --verify --run-dir DIR [--filter GROUP|SUBSTRING]... [--cases Nx|N] [--time 8h] [--batch N] [--seed S] [--devices cpu,cuda] [--resume] [--parent-watch]"

let private parseArgs (argv: string list) =
    let rec go (a: Args) =
        function
        | [] -> Ok a
        | "--run-dir" :: v :: rest -> go { a with RunDir = Some v } rest
        | "--filter" :: v :: rest -> go { a with Filters = a.Filters @ [ v ] } rest
        | "--cases" :: v :: rest -> go { a with Cases = Some v } rest
        | "--time" :: v :: rest -> go { a with Time = Some v } rest
        | "--batch" :: v :: rest ->
            match Int32.TryParse(v, NumberStyles.Integer, inv) with
            | true, n when n > 0 -> go { a with Batch = Some n } rest
            | _ -> Error (sprintf "--batch %s: expected a positive case count" v)
        | "--seed" :: v :: rest ->
            match Int64.TryParse(v, NumberStyles.Integer, inv) with
            | true, s -> go { a with Seed = s } rest
            | _ -> Error (sprintf "--seed %s: expected an integer" v)
        | "--devices" :: v :: rest -> go { a with Devices = v.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries) |> List.ofArray } rest
        | "--parent-watch" :: rest -> go { a with ParentWatch = true } rest
        | "--resume" :: rest -> go { a with Resume = true } rest
        | x :: _ -> Error (sprintf "unknown or incomplete argument %s; %s" x usage)
    go { RunDir = None; Filters = []; Cases = None; Time = None; Batch = None; Seed = 1L; Devices = []; ParentWatch = false; Resume = false } argv

/// `Properties --verify …`: runs (or resumes) the plan in the run directory on the device of `RF_TEST_DEVICE`.
/// Exit 0: every batch run passed (the summary says whether every planned batch ran); 1: a failure or a vacuous
/// property; 2: bad arguments or a resume whose plan differs.
let main (argv: string list) =
    match parseArgs argv with
    | Error e ->
        eprintfn "verify: %s" e
        2
    | Ok { RunDir = None } ->
        eprintfn "verify: --run-dir is required; %s" usage
        2
    | Ok args ->
    let runDir = Path.GetFullPath args.RunDir.Value
    let planPath = Path.Combine(runDir, "verify.json")
    let cases =
        match args.Cases, args.Time with
        | Some c, _ -> parseCases c
        | None, Some _ -> Ok Unlimited
        | None, None -> Ok (Multiple 1.0)
    let time = args.Time |> Option.map parseDuration
    match cases, time with
    | Error e, _ | _, Some (Error e) ->
        eprintfn "verify: %s" e
        2
    | Ok cases, time ->
    let given =
        { MasterSeed = args.Seed; Filters = (if args.Filters.IsEmpty then [ "MathCore"; "Algorithm"; "Proofs"; "Differential" ] else args.Filters)
          Cases = cases; Batch = args.Batch; SizeScale = Seeds.sizeScale
          Devices = (if args.Devices.IsEmpty then [ TestDevice.preference ] else args.Devices) }
    let planResult =
        if File.Exists planPath then
            let saved = planOfJson (JsonNode.Parse(File.ReadAllText planPath))
            if args.Resume then
                if saved.SizeScale <> Seeds.sizeScale then
                    Error (sprintf "the run was planned at size scale %g, this process has RF_SIZE_SCALE=%g" saved.SizeScale Seeds.sizeScale)
                else Ok saved
            elif saved <> given then
                Error (sprintf "%s holds another plan (%s); resume it with rf verify --resume %s, or choose another --out"
                           runDir ((planToJson saved).ToJsonString(compact)) runDir)
            else Ok saved
        elif args.Resume then Error (sprintf "%s is not a verification run (no verify.json)" runDir)
        else
            Directory.CreateDirectory runDir |> ignore
            writeAtomically planPath ((planToJson given).ToJsonString(indented))
            Ok given
    match planResult with
    | Error e ->
        eprintfn "verify: %s" e
        2
    | Ok plan ->
    if plan.Cases = Unlimited && time.IsNone then
        eprintfn "verify: the plan has no case limit: give --time (e.g. --time 8h)"
        2
    else
    if args.ParentWatch then watchParent ()
    Seeds.Observe.verifying <- true
    let device = TestDevice.configName ()
    let properties = Regressions.properties () |> List.filter (fun p -> selected plan.Filters p.Name) |> List.map (planned plan)
    if properties.IsEmpty then
        eprintfn "verify: no property matches %s (groups: %s; any other filter is a substring of a property's full name)"
            (String.concat ", " plan.Filters) (groups |> List.map fst |> String.concat ", ")
        2
    else
    let recordsPath = Path.Combine(runDir, "batches.jsonl")
    let mutable records = readRecords recordsPath
    let started =
        match JsonNode.Parse(File.ReadAllText planPath)["startedUtc"] with
        | null ->
            let now = DateTime.UtcNow
            let node = JsonNode.Parse(File.ReadAllText planPath)
            node["startedUtc"] <- JsonValue.Create(now.ToString("O", inv))
            writeAtomically planPath (node.ToJsonString(indented))
            now
        | n -> DateTime.Parse(n.GetValue<string>(), inv, DateTimeStyles.RoundtripKind)
    let isDone (p: Planned) b = records |> List.exists (fun r -> r.Property = p.Property.Name && r.Device = device && r.Batch = b)
    let hasFailed (p: Planned) = records |> List.exists (fun r -> r.Property = p.Property.Name && r.Device = device && r.Failed)
    let resumed = records |> List.filter (fun r -> r.Device = device) |> List.length
    printfn "verify: %d properties on %s, cases %s, master seed %d, size scale %s, run %s%s"
        properties.Length device (casesText plan.Cases) plan.MasterSeed (plan.SizeScale.ToString("R", inv)) runDir
        (if resumed > 0 then sprintf " (resuming: %d batches already done)" resumed else "")
    let clock = Stopwatch.StartNew()
    let budget = time |> Option.map (function Ok s -> s | Error _ -> 0.0)
    let outOfTime () = match budget with Some s -> clock.Elapsed.TotalSeconds >= s | None -> false
    let maxRounds = properties |> List.map batches |> List.fold (fun acc b -> match acc, b with Some a, Some n -> Some (max a n) | _ -> None) (Some 0)
    let mutable round = 0
    let mutable stoppedForTime = false
    let roundLimitReached () = round = Int32.MaxValue || (match maxRounds with Some n -> round >= n | None -> false)
    while not (roundLimitReached ()) && not stoppedForTime do
        for p in properties do
            let inPlan = match batches p with Some n -> round < n | None -> true
            if inPlan && not stoppedForTime && not (isDone p round) && not (hasFailed p) then
                if outOfTime () then stoppedForTime <- true
                else
                    let seeds = batchSeed plan.MasterSeed p.Property.Name round
                    let n = casesOf p round
                    let outcome = runBatch p.Property seeds n
                    let failureFile, ran =
                        match outcome.Error with
                        | None -> None, n
                        | Some e ->
                            let facts = failureFacts e
                            Some (saveFailure runDir plan device p round seeds n outcome facts), defaultArg facts.FailedAfter outcome.Received.Length
                    let record =
                        { Property = p.Property.Name; Device = device; Batch = round; Seed = fst seeds; Gamma = snd seeds
                          Cases = ran; NonVacuous = outcome.NonVacuous |> Option.map fst; Fraction = outcome.NonVacuous |> Option.map snd
                          WallSeconds = outcome.Seconds; Shapes = outcome.Shapes; Digest = digest outcome.Received
                          Failed = outcome.Error.IsSome; FailureFile = failureFile }
                    File.AppendAllText(recordsPath, (recordToJson record).ToJsonString(compact) + "\n")
                    records <- records @ [ record ]
                    let totals = writeSummary runDir plan properties records false started
                    printfn "verify: [%s] %s batch %d%s: %d case(s) %s in %.1f s%s — %d cases so far, %d failures, %s elapsed"
                        device p.Property.Name round (match batches p with Some b -> sprintf "/%d" b | None -> "") ran
                        (if record.Failed then "FAILED" else "passed") record.WallSeconds
                        (match record.NonVacuous with Some v -> sprintf " (%d non-vacuous)" v | None -> "")
                        (totals |> List.sumBy (fun t -> t.Cases)) (totals |> List.sumBy (fun t -> t.Failures.Length))
                        (clock.Elapsed.ToString(@"hh\:mm\:ss", inv))
                    match failureFile with
                    | Some f ->
                        printfn "verify: failure saved: %s (replay: rf verify --replay %s)" f (quoteSh (Path.Combine(runDir, f)))
                        let regression = regressionLineOf (Path.Combine(runDir, f))
                        printfn "verify: regression line for Properties/Verify/Regressions.fs: %s" regression
                    | None -> ()
        round <- round + 1
        // Every property failed: nothing is left to run (a time-only plan would otherwise spin until its budget).
        if properties |> List.forall hasFailed then round <- Int32.MaxValue
        if budget.IsSome && maxRounds.IsNone && outOfTime () then stoppedForTime <- true
    let totals = writeSummary runDir plan properties records true started
    let bad = totals |> List.filter (fun t -> t.Status = "FAILED" || t.Status = "VACUOUS")
    printfn "verify: %s — %d cases, %d failing or vacuous properties; report %s"
        (if stoppedForTime then "time budget spent" else "done") (totals |> List.sumBy (fun t -> t.Cases)) bad.Length
        (Path.Combine(runDir, "summary.md"))
    if bad.IsEmpty then 0 else 1

/// `Properties --verify-replay FILE`: runs the saved batch again and says whether it fails identically (the same
/// cases, the same failing case, the same shrunk case). Exit 1 when the failure reproduces, 0 when the property now
/// passes, 2 on a bad file or another environment.
let replayMain (file: string) =
    let node =
        try Ok (JsonNode.Parse(File.ReadAllText file)) with e -> Error e.Message
    match node with
    | Error e ->
        eprintfn "verify --replay: %s: %s" file e
        2
    | Ok node ->
    let name = node["property"].GetValue<string>()
    let device = node["device"].GetValue<string>()
    let scale = node["sizeScale"].GetValue<float>()
    if TestDevice.configName () <> device || Seeds.sizeScale <> scale then
        eprintfn "verify --replay: the failure ran on %s at size scale %g; this process runs on %s at %g (set RF_TEST_DEVICE, RF_SIZE_SCALE)"
            device scale (TestDevice.configName ()) Seeds.sizeScale
        2
    else
    Seeds.Observe.verifying <- true
    let p = Regressions.find name
    let seeds = UInt64.Parse(node["batchSeed"].GetValue<string>(), inv), UInt64.Parse(node["gamma"].GetValue<string>(), inv)
    let cases = node["batchCases"].GetValue<int>()
    printfn "replay: %s [%s], batch seed (%d, %d), %d cases" name device (fst seeds) (snd seeds) cases
    let outcome = runBatch p seeds cases
    match outcome.Error with
    | None ->
        printfn "replay: the property passed all %d cases: the saved failure does not reproduce (fixed?)" cases
        0
    | Some e ->
        let facts = failureFacts e
        let savedShrunk = match node["shrunk"] with null -> None | n -> Some (n.GetValue<string>())
        let same =
            digest outcome.Received = node["digest"].GetValue<string>()
            && facts.Original = node["original"].GetValue<string>()
            && facts.Shrunk = savedShrunk
            && (match node["failedAfter"] with null -> true | n -> Some (n.GetValue<int>()) = facts.FailedAfter)
        printfn "%s" facts.Message
        if same then
            printfn "replay: reproduced bit for bit: the same %d case(s) (digest %s), failing case %s%s"
                outcome.Received.Length (digest outcome.Received) facts.Original
                (match facts.Shrunk with Some s -> ", shrunk to " + s | None -> "")
        else
            printfn "replay: the property fails, but not identically: saved failing case %s (shrunk %A), now %s (shrunk %A)"
                (node["original"].GetValue<string>()) savedShrunk facts.Original facts.Shrunk
        match node["case"] with
        | null -> ()
        | c ->
            let one = UInt64.Parse(c["seed"].GetValue<string>(), inv), UInt64.Parse(c["gamma"].GetValue<string>(), inv), c["size"].GetValue<int>()
            Seeds.Observe.reset ()
            let received = Collections.Generic.List<string>()
            let s1, g1, size1 = one
            let config = { p.Config with maxTest = 1; replay = Some (s1, g1, Some size1); receivedArgs = fun _ _ _ args -> async { received.Add(sprintf "%A" args) } }
            let failed = try p.Run config |> Async.RunSynchronously; false with _ -> true
            let again = failed && (received.Count = 0 || outcome.Received.IsEmpty || received.[0] = List.last outcome.Received)
            printfn "replay: the failing case alone (FsCheck case seed %A): %s" one
                (if again then "fails again, the same arguments" else "does NOT reproduce on its own")
        printfn "replay: regression line for %s: %s" (node["regressionFile"].GetValue<string>()) (node["regressionLine"].GetValue<string>())
        1
