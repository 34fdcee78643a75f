#!/usr/bin/env bash
# Mutation testing of the σ_min certificate (issue: "the σ_min certificate's tests cannot see a
# broken bound"). Applies each mutant below to Math.Core/Certify.fs or Math.Core/Gram.fs, one at a
# time, rebuilds, runs the MathCore tests, and reports killed/survived with the failing tests.
# SM* mutants edit Math.Core/ScaLAPACK.fs: run them with FILTER="MathCore.ScaLAPACK" (mpirun, ~3 min a mutant).
# D* mutants edit Math.Core/DenseNative.fs (rf certify --matrix without libtorch): FILTER="MathCore.DenseNative".
# OP* mutants (one product first, rf certify --matrix): FILTER="Host.Interop".
# The mutated files are restored on exit (also on Ctrl-C or failure). Not for CI: ~1 min a mutant.
#
#   experiments/mutants-certify.sh            # all mutants
#   experiments/mutants-certify.sh M3 M10     # some of them
#   FILTER="MathCore.Certify" experiments/mutants-certify.sh
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
filter="${FILTER:-MathCore}"
backup="$(mktemp -d)"
files=(Math.Core/Certify.fs Math.Core/Gram.fs Math.Core/Tiled.fs Math.Core/TileCholesky.fs Math.Core/ScaLAPACK.fs Math.Core/DenseNative.fs Host/Certification/MatrixCertification.cs)
for f in "${files[@]}"; do mkdir -p "$backup/$(dirname "$f")"; cp "$f" "$backup/$f"; done
restore() {
    for f in "${files[@]}"; do cp "$backup/$f" "$f"; done
    rm -rf "$backup"
    dotnet build Properties -c Release --no-restore -v q >/dev/null 2>&1 || true
}
trap restore EXIT

# id | file | literal text | replacement | description  (\| is a literal bar, ⏎ a line break)
mutants=(
"M1|Math.Core/Certify.fs|let lam = FloatingPoint.subDown lamFl e|let lam = lamFl|drop the accumulation term E"
"M2|Math.Core/Certify.fs|let lamFl = FloatingPoint.subDown (FloatingPoint.subDown c maxD) cholErr|let lamFl = FloatingPoint.subDown c maxD|drop the Cholesky backward error γ'_{n+1}tr(Ã)"
"M3|Math.Core/Certify.fs|let lamFl = FloatingPoint.subDown (FloatingPoint.subDown c maxD) cholErr|let lamFl = FloatingPoint.subDown c cholErr|drop the shift rounding max|D|"
"M4|Math.Core/Certify.fs|    let g = FloatingPoint.gamma FloatingPoint.unitRoundoff64 depth|    let g = FloatingPoint.gamma FloatingPoint.unitRoundoff64 (depth - 1)|γ'_{h−1} instead of γ'_{h_C} for the Cholesky backward error"
"M5|Math.Core/Certify.fs|shifted.diagonal().sub_(scalar c) \|> ignore|shifted.diagonal().sub_(scalar 0.0) \|> ignore|apply no shift (Cholesky of fl G, c still recorded)"
"M6|Math.Core/Certify.fs|    if completed then Some diagonal else None|    ignore completed; Some diagonal|dense: accept a failed Cholesky"
"M7|Math.Core/TileCholesky.fs|if NativeBlas.potrfLower diagonal <> 0 then ok <- false|if NativeBlas.potrfLower diagonal < 0 then ok <- false|panels: accept a panel potrf with info > 0 (non-positive pivot)"
"M8|Math.Core/Certify.fs|FloatingPoint.scaleDown (FloatingPoint.down (sqrt lam)) scale|FloatingPoint.scaleDown (FloatingPoint.down lam) scale|σ_min = λ instead of √λ"
"M9|Math.Core/Certify.fs|let sigma = FloatingPoint.scaleDown (FloatingPoint.down (sqrt lam)) scale|let sigma = 1.1 * FloatingPoint.scaleDown (FloatingPoint.down (sqrt lam)) scale|σ_min bound inflated by 10 %"
"M10|Math.Core/Gram.fs|FloatingPoint.gamma FloatingPoint.unitRoundoff64 (max 1 depth)) squaredNormSumUpper|FloatingPoint.gamma FloatingPoint.unitRoundoff64 1) squaredNormSumUpper|γ_1 instead of γ_{h_G} for the Gram accumulation"
"M11|Math.Core/Certify.fs|let lam = FloatingPoint.subDown lamFl e|let lam = FloatingPoint.addUp lamFl e|wrong sign of the accumulation term (+E)"
"M12|Math.Core/Certify.fs|let lamFl = FloatingPoint.subDown (FloatingPoint.subDown c maxD) cholErr|let lamFl = FloatingPoint.addUp (FloatingPoint.subDown c maxD) cholErr|wrong sign of the Cholesky term"
"M13|Math.Core/Certify.fs|let lamFl = FloatingPoint.subDown (FloatingPoint.subDown c maxD) cholErr|let lamFl = FloatingPoint.subDown (FloatingPoint.addUp c maxD) cholErr|wrong sign of the shift rounding term"
"M14|Math.Core/Certify.fs|let maxD = FloatingPoint.mulUp u (FloatingPoint.inflate u (diag \|> Array.map abs \|> Array.max))|let maxD = FloatingPoint.mulUp 0.0 (FloatingPoint.inflate u (diag \|> Array.map abs \|> Array.max))|shift rounding bound with u → 0"
"M15|Math.Core/Certify.fs|let sigma = FloatingPoint.scaleDown (FloatingPoint.down (sqrt lam)) scale|let sigma = FloatingPoint.down (sqrt lam)|σ_min not multiplied back by 2^e"
"M16|Math.Core/Gram.fs|SquaredNormSumUpper = FloatingPoint.scaleUp gram.SquaredNormSumUpper (-2 * e)|SquaredNormSumUpper = gram.SquaredNormSumUpper|Σ‖φ̃_i‖² bound not scaled with the Gram"
"M17|Math.Core/Gram.fs|then (Math.ILogB maxDiagonal + 1) >>> 1 else 0|then 0 else 0|no scaling (e = 0 always)"
"M18|Math.Core/Certify.fs|let r, norm = if n2 < 0.5 * n1 then (let r3 = project r2 in r3, r3.norm().item<float> ()) else r2, n2⏎            if norm > tolerance * scale && Double.IsFinite norm|let r, norm = r2, n2⏎            if norm > 0.0 && Double.IsFinite norm|the old λ_max estimate: Krylov loop stops only on an exactly zero residual, no third Gram–Schmidt pass"
"M21|Math.Core/Certify.fs|if norm > tolerance * scale && Double.IsFinite norm|if norm > 0.0 && Double.IsFinite norm|Krylov loop stops only on an exactly zero residual, third pass kept (equivalent: expected to survive)"
"M19|Math.Core/Certify.fs|let x = x.div(x.abs().max())|let x = x|inverse iteration without normalising by max|x_i| first"
"M20|Math.Core/Certify.fs|FloatingPoint.scaleUp (FloatingPoint.up (sqrt terms.SquaredNormSumUpper)) terms.ScaleExponent|FloatingPoint.up (sqrt terms.SquaredNormSumUpper)|‖Φ̃‖_F bound not multiplied back by 2^e"
"TM1|Math.Core/Tiled.fs|if ok then Some (diagonalOf shift) else None|if ok then Some (diagonalOf shift \|> Array.map (fun _ -> 0.0)) else None|tiled: tr(Ã) reported as 0 (drops the backward error γ'_{n+1}tr(Ã) of the tiled factorisation)"
"TM2|Math.Core/TileCholesky.fs|        for j in 0 .. k - 1 do|        for j in 0 .. k - 2 do|tiled: skip the last trailing (syrk/gemm) update of every tile"
"TM3|Math.Core/Tiled.fs|let g = gramTile settings.GramChunkColumns withBias ri rj (i = j)|let g = gramTile settings.GramChunkColumns withBias ri ri (i = j)|tiled: Gram tile G_IJ formed from row tile I twice"
"TM4|Math.Core/Tiled.fs|withFactor i j (fun lij -> r.sub_(lij.mm(block y j)) \|> ignore)|withFactor i j (fun lij -> r.add_(lij.mm(block y j)) \|> ignore)|tiled: forward substitution with the wrong sign"
"TM5|Math.Core/Tiled.fs|let shift (t: torch.Tensor) = (use d = t.diagonal() in d.sub_(scalar c)) \|> ignore|let shift (t: torch.Tensor) = (use d = t.diagonal() in d.sub_(scalar 0.0)) \|> ignore|tiled: apply no shift (c still recorded)"
"TM6|Math.Core/TileCholesky.fs|            if NativeBlas.potrfLower a <> 0 then false|            if (NativeBlas.potrfLower a \|> ignore; false) then false|tiled: accept a failed whole-tile potrf"
"TC1|Math.Core/TileCholesky.fs|                        if i = k then NativeBlas.syrkLower 1.0 x 0.0 update⏎                        else (use y = columnsOf lkj p w in NativeBlas.gemmNT 1.0 x y 0.0 update)⏎                        a.sub_(update) \|> ignore|                        if i = k then NativeBlas.syrkLower -1.0 x 1.0 a⏎                        else (use y = columnsOf lkj p w in NativeBlas.gemmNT -1.0 x y 1.0 a)|panels: updates accumulated in the tile inside BLAS (β = 1), not formed apart (FILTER=MathCore.Tiled)"
"TC2|Math.Core/TileCholesky.fs|                subtractEarlierPanels (if p = 0 then [] else panelsOf p) buffer target below panelRows|                subtractEarlierPanels (if p = 0 then [] else [ 0, p ]) buffer target below panelRows|panels: the diagonal tile's earlier panels in one product (FILTER=MathCore.Tiled)"
"TC3|Math.Core/TileCholesky.fs|    let s = panelWidth b panel⏎    let tiles = (n + b - 1) / b|    let s = b⏎    let tiles = (n + b - 1) / b|panels: h_C counted for whole tiles whatever the panel"
"TC4|Math.Core/TileCholesky.fs|    else⏎        withFactor k k (fun lkk ->⏎            use scope = torch.NewDisposeScope()|    elif true then⏎        withFactor k k (fun lkk -> NativeBlas.trsmRightLowerTranspose lkk a)⏎        true⏎    else⏎        withFactor k k (fun lkk ->⏎            use scope = torch.NewDisposeScope()|panels: a whole-tile trsm below the diagonal (FILTER=MathCore.Tiled)"
"TC5|Math.Core/Tiled.fs|    let ordered (key: string) = if panel >= b then key else sprintf \"p%d%s\" panel key|    let ordered (key: string) = key|tiled: factorisations named without their panel width (a resumed run would trust another order's outcome)"
"TC6|Math.Core/TileCholesky.fs|                subtractEarlierPanels (if p = 0 then [] else panelsOf p) buffer target a lkkRows|                subtractEarlierPanels (if p = 0 then [] else [ 0, p ]) buffer target a lkkRows|panels: a tile's earlier panels in one product below the diagonal (FILTER=MathCore.Tiled)"
"TC7|Math.Core/Certify.fs|      CholeskyDepth = TileCholesky.depth n n opts.CholeskyPanel|      CholeskyDepth = n + 1|dense: LAPACK's n + 1 recorded though the factorisation runs in panels"
"TC9|Math.Core/Tiled.fs|if TileCholesky.step panel (fun i j f -> withFactor key i j f) i k a then|if TileCholesky.step 0 (fun i j f -> withFactor key i j f) i k a then|tiled: whole tiles under the panel order's constant (FILTER=MathCore.Tiled)"
"TC8|Math.Core/Certify.fs|let completed = if panel <= 0 \|\| panel >= n then NativeBlas.potrfLower a = 0 else TileCholesky.factorInPlace panel a|let completed = NativeBlas.potrfLower a = 0|dense: LAPACK's whole-matrix potrf under the panel order's constant"
"AO1|Math.Core/Certify.fs|            n + 1, anyOrder.Shifted, anyOrder.Trial|            gram.CholeskyDepth, anyOrder.Shifted, anyOrder.Trial|order choice: LAPACK's order recorded with the panels' h"
"AO2|Math.Core/Certify.fs|      ShiftedCholesky = fun c -> lambdaMinShiftedCholesky work opts.CholeskyPanel gram c|      ShiftedCholesky = fun c -> lambdaMinShiftedCholesky work 0 gram c|order choice: the dense shifted test in LAPACK's order under the panels' h"
"AO3|Math.Core/Certify.fs|      TrialCholesky = fun t -> lambdaMaxTrialCholesky work opts.CholeskyPanel gram t|      TrialCholesky = fun t -> lambdaMaxTrialCholesky work 0 gram t|order choice: the dense σ_max trial in LAPACK's order under the panels' h"
"AO4|Math.Core/Certify.fs|        \| Some anyOrder when warm.IsNone && anyOrderSuffices|        \| Some anyOrder when anyOrderSuffices|order choice: a warm shift's panels followed by LAPACK's trial"
"AO5|Math.Core/Certify.fs|fractions -> List.min fractions * lambdaMinEstimate|fractions -> List.head fractions * lambdaMinEstimate|order choice: the rule on the first shift, not the smallest"
"AO6|Math.Core/Certify.fs|choleskyGamma (n + 1) * squaredNormSumUpper <= opts|choleskyGamma (n + 1) * squaredNormSumUpper >= opts|order choice: the rule reversed"
"AO7|Math.Core/Certify.fs| \|\| NativeBlas.current () <> NativeBlas.Backend.OpenBlas then None| then None|order choice: LAPACK's order offered on libtorch's kernels too (cost only)"
"AO8|Math.Core/Certify.fs|    let baseTerms = { baseTerms with CholeskyGammaIndex = choleskyDepth }|    let baseTerms = baseTerms|order choice: the recorded index left at the operator's"
"RS1|Math.Core/Certify.fs|    && krylov.LambdaMinRitzChange <= opts.RitzShiftTolerance|    && true|Ritz shift: tried whether or not θ_min has settled (cost only)"
"RS2|Math.Core/Certify.fs|let c = opts.RitzShiftFraction * krylov.LambdaMinRitz|let c = List.head opts.ShiftFractions * krylov.LambdaMinRitz|Ritz shift: 0.75 of θ_min instead of 0.9 (tightness only)"
"RS3|Math.Core/Certify.fs|let ritzAttempts = if ritzTried && ritzShift.IsNone then 1 else 0|let ritzAttempts = 0|Ritz shift: a failed one not counted in ShiftAttempts"
"RS4|Math.Core/Certify.fs|ritzBottomBefore <- (if ritzStep = j - 1L then ritzBottom else nan)|ritzBottomBefore <- nan|Ritz shift: θ_min's last move never formed (never tried)"
"TM7|Math.Core/Tiled.fs|AccumulationErrorBound = accumulationError|AccumulationErrorBound = 0.0|tiled: drop the accumulation term E"
"TM8|Math.Core/Tiled.fs|if sha.GetHashAndReset() <> digest then Error|if false then Error|tiled: trust a tile file without its checksum"
"TM9|Math.Core/Tiled.fs|found <> headerBytes then|false then|tiled: trust a tile file of another run (no fingerprint check)"
"M22|Math.Core/Certify.fs|then FloatingPoint.subDown product eUpper else -infinity|then product else -infinity|orthogonal route: drop the residual term ‖E‖ = ‖Φ̃ᵀ − Q̂R̂‖"
"M23|Math.Core/Certify.fs|FloatingPoint.down (FloatingPoint.subDown 1.0 nUpper / xUpper)|FloatingPoint.down (1.0 / xUpper)|orthogonal route: drop the factor (1 − ‖N‖) of σ_min(R̂) ≥ (1 − ‖N‖)/‖X‖"
"M24|Math.Core/Certify.fs|let p = FloatingPoint.mulUp (gammaRatio k) absProductFrobenius|let p = FloatingPoint.mulUp (gammaRatio (k - 1)) absProductFrobenius|orthogonal route: γ_{k−1} instead of γ_k in the product rounding bounds"
"M25|Math.Core/Certify.fs|let qLower = if fUpper < 1.0 then FloatingPoint.down (sqrt (FloatingPoint.subDown 1.0 fUpper)) else 0.0|let qLower = 1.0|orthogonal route: σ_min(Q̂) taken as 1 (drop ‖Q̂ᵀQ̂ − I‖)"
"M26|Math.Core/Certify.fs|let p = FloatingPoint.mulUp (gammaRatio k) absProductFrobenius|let p = 0.0|orthogonal route: drop the product rounding term γ_k·‖abs(P)·abs(Q)‖_F (only the computed residual)"
"M27|Math.Core/Certify.fs|        let sigma = FloatingPoint.scaleDown s e|        let sigma = s|orthogonal route: σ_min not multiplied back by 2^e"
"SM1|Math.Core/ScaLAPACK.fs|Some (broadcast grid (scaledDiagonal \|> Array.map (fun g -> t - g)))|None|scalapack: the σ_max trial's outcome dropped (Frobenius bound only)"
"SM2|Math.Core/ScaLAPACK.fs|Some (broadcast grid (scaledDiagonal \|> Array.map (fun g -> g - c)))|Some (broadcast grid (scaledDiagonal \|> Array.map (fun g -> 0.0 * (g - c))))|scalapack: tr(Ã) reported as 0 (drops Demmel's backward error γ'_{n+1}tr(Ã))"
"SM3|Math.Core/ScaLAPACK.fs|for k in 0 .. s.Length - 1 do s.[k] <- s.[k] + 1.0|for k in 0 .. s.Length - 1 do s.[k] <- s.[k] + 0.0|scalapack: the bias column's 1 not added to fl G"
"SM4|Math.Core/ScaLAPACK.fs|let failed = (maxAll grid [\| (if info <> 0 then 1.0 else 0.0) \|]).[0] > 0.0|let failed = false|scalapack: accept a failed pdpotrf"
"SM5|Math.Core/ScaLAPACK.fs|for k in 0 .. s.Length - 1 do s.[k] <- scaleEntry s.[k]|for k in 0 .. s.Length - 1 do s.[k] <- s.[k]|scalapack: local blocks of fl G not scaled by 4^(−e) (diagonal and terms scaled)"
"SM6|Math.Core/ScaLAPACK.fs|collectively grid (fun () ->⏎            let mutable lr = 0|(fun (f: unit -> unit) -> f ()) (fun () ->⏎            let mutable lr = 0|scalapack: a rank's read failure not agreed before pdsyrk (the other ranks wait in it)"
"D1|Math.Core/DenseNative.fs|            addLower rows part.Pointer gram.Pointer|            ()|native Gram: a later product never added"
"D2|Math.Core/DenseNative.fs|for j in 0 .. i do set g (row + int64 j) (get g (row + int64 j) + 1.0)|for j in 0 .. i do set g (row + int64 j) (get g (row + int64 j) + (if j = i then 1.0 else 0.0))|native Gram: the bias column's 1 added on the diagonal only"
"D3|Math.Core/DenseNative.fs|        NativeBlas.Raw.mirrorLower gram.Pointer n rows|        ()|native Gram: the upper triangle never mirrored"
"D4|Math.Core/DenseNative.fs|                    widen (block + nativeint (4L * r * ld)) (b + nativeint (8L * r * int64 width)) width|                    widen (block + nativeint (4L * r * int64 width)) (b + nativeint (8L * r * int64 width)) width|native Gram: a float32 block read with its width as leading dimension"
"D5|Math.Core/DenseNative.fs|        formed false -c|        formed false c|native shifted test: fl G + c·I factored"
"D6|Math.Core/DenseNative.fs|        formed true t|        formed true (t * 0.5)|native σ_max trial: t/2·I − fl G factored"
"D7|Math.Core/DenseNative.fs|                    set row k (get row k - get u k)|                    set row k (get row k)|native panel Cholesky: earlier panels' updates not subtracted"
"D8|Math.Core/DenseNative.fs|    let tol = 8.0 * gram.AccumulationErrorBound|    let tol = -1.0|native duplicate scan: no candidate ever"
"D15|Math.Core/DenseNative.fs|                    if found.Count < maxCandidates && d.[i] + dRow.[k + l] - gRow.[k + l] * 2.0 <= tol then found.Add((i, i + 1 + k + l))|                    if found.Count < maxCandidates && d.[i] + dRow.[k + l] - gRow.[k + l] * 2.0 <= tol then found.Add((i, i + k + l))|native duplicate scan: a vector lane's candidate reported one column off"
"D9|Math.Core/DenseNative.fs|        values.[j - 1], values.[0]|        values.[0], values.[0]|native Lanczos: the smallest Ritz value as θ_max"
"D10|Math.Core/DenseNative.fs|            NativeBlas.Raw.trsvLower true n l n (h.AddrOfPinnedObject())|            ()|native inverse iteration: L⁻ᵀ solve dropped"
"D11|Math.Core/DenseNative.fs|    let f1, f2 = Gram.scaleFactors e|    let f1, f2 = Gram.scaleFactors (e - 1)|native scaling: 4^(−e+1) applied while e is recorded"
"D12|Math.Core/DenseNative.fs|              ZeroRows = Gram.zeroRowsOf squares|              ZeroRows = [\|\|]|native Gram: zero rows never reported"
"D13|Math.Core/DenseNative.fs|                        if a > 0.0 && a < FloatingPoint.underflowGuard then|                        if a > 0.0 && a < 0.0 then|native Gram: float64 entries below the underflow guard accepted"
"D14|Math.Core/DenseNative.fs|            let r2 = project j r1|            let r2 = r1|native Lanczos: one Gram–Schmidt pass instead of two (estimate only)"
"D16|Math.Core/DenseNative.fs|        elif below mid < j then lo <- mid else hi <- mid|        elif below mid < j - 1 then lo <- mid else hi <- mid|tridiagonalTop: the second largest eigenvalue (the Lanczos stops on it)"
"D17|Math.Core/DenseNative.fs|            d <- a.[i] - x - (if i > 0 then b.[i] * b.[i] / d else 0.0)|            d <- a.[i] - x - (if i > 0 then abs b.[i] / d else 0.0)|tridiagonalTop: Sturm pivots with \|β\| instead of β²"
"D18|Math.Core/DenseNative.fs|    let e = Math.ILogB largest|    let e = 0|tridiagonalTop: no scaling by a power of two (β² overflows or underflows at the ends of the range)"
"D19|Math.Core/DenseNative.fs|    if not finite then nan|    if false then nan|tridiagonalTop: a non-finite entry not refused"
"OP1|Math.Core/Certify.fs|    && t.Shift > 0.0 && t.LambdaMinLower <= 0.0|    && false|one product first: never accumulate again in the blocked order"
"OP2|Math.Core/Certify.fs|    && t.LambdaMinComputedGramLower > Gram.GramMatrix.ErrorBound blockedDepth t.SquaredNormSumUpper 0.0|    && true|one product first: accumulate again whatever the blocked order's term"
"OP3|Host/Certification/MatrixCertification.cs|        bool oneProductFirst = engine.GramChunkColumns is null && engine.CholeskyPanel is null;|        bool oneProductFirst = false;|one product first: never (the blocked order always)"
)

wanted=("$@")
printf '| mutant | edit | result | killing tests |\n|---|---|---|---|\n'
for entry in "${mutants[@]}"; do
    IFS='|' read -r id file from to what <<<"$(printf '%s' "$entry" | sed 's/\\|/\x01/g')"
    from="${from//$'\x01'/|}"; to="${to//$'\x01'/|}"
    from="${from//⏎/$'\n'}"; to="${to//⏎/$'\n'}"   # ⏎ marks a line break inside a mutant
    if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $id "* ]]; then continue; fi
    for f in "${files[@]}"; do cp "$backup/$f" "$f"; done
    count=$(FROM="$from" perl -0ne 'print scalar(() = /\Q$ENV{FROM}\E/g)' "$file")
    if [ "$count" != "1" ]; then
        printf '| %s | %s | NOT APPLIED (pattern found %s times) | |\n' "$id" "$what" "$count"; continue
    fi
    FROM="$from" TO="$to" perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$file"
    if ! dotnet build Properties -c Release --no-restore -v q >"$backup/build.log" 2>&1; then
        printf '| %s | %s | build failed (killed by the compiler) | |\n' "$id" "$what"; continue
    fi
    out=$(dotnet run --project Properties -c Release --no-build -- --filter "$filter" 2>&1 | sed 's/\x1b\[[0-9;]*m//g')
    # Test names may contain ';' and '|': join with ' ¦ ' and escape '|' for the Markdown table.
    killers=$(printf '%s\n' "$out" | grep -oE 'ERR\] .* (failed|errored) in' | sed -E 's/^ERR\] //; s/ (failed|errored) in$//; s/\|/\\|/g' | sort -u | awk 'NR > 1 { printf " ¦ " } { printf "%s", $0 }')
    summary=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed' | tail -1)
    if [ -n "$killers" ]; then result="killed ($summary)"; else result="SURVIVED ($summary)"; fi
    printf '| %s | %s | %s | %s |\n' "$id" "${what//|/\\|}" "$result" "$killers"
done
