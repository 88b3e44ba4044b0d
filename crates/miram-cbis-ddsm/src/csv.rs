//! The four CBIS-DDSM case-description CSVs, read as they are and written as they are.
//!
//! Mirrors `mass_case_description_{train,test}_set.csv` and
//! `calc_case_description_{train,test}_set.csv` from TCIA (docs/dataset.md): RFC 4180
//! quoting with embedded newlines at the end of path fields, `breast_density` (mass files)
//! versus `breast density` (calc files), `NA` for missing values, combined values joined by
//! `-`, and `LUCENT_CENTER` next to `LUCENT_CENTERED`. Anything outside the vocabulary of the
//! real files is an [`DdsmError::UnknownValue`] naming the file, row, column and value; a
//! header that is not one of the two real column sets is a [`DdsmError::Columns`] listing the
//! missing and unknown columns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{DdsmError, Result};
use crate::records::{
    category_columns, category_vocabulary, normalise_category_part, AbnormalityType, CaseRecord,
    OfficialSplit, Pathology, RecordSource, Side, View,
};

/// The columns of the mass files, in file order, spelled as in the real files.
pub const MASS_COLUMNS: [&str; 14] = [
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "mass shape",
    "mass margins",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
];

/// The columns of the calcification files, in file order, spelled as in the real files.
pub const CALC_COLUMNS: [&str; 14] = [
    "patient_id",
    "breast density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "calc type",
    "calc distribution",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
];

/// The columns of one abnormality type, spelled as in its real files.
pub fn columns_of(kind: AbnormalityType) -> &'static [&'static str; 14] {
    match kind {
        AbnormalityType::Mass => &MASS_COLUMNS,
        AbnormalityType::Calcification => &CALC_COLUMNS,
    }
}

/// The file name TCIA gives the CSV of a type and split, e.g.
/// `mass_case_description_train_set.csv`.
pub fn case_csv_name(kind: AbnormalityType, split: OfficialSplit) -> String {
    format!(
        "{}_case_description_{}_set.csv",
        kind.file_stem(),
        split.file_word()
    )
}

/// How [`write_case_csv_with`] lays out path fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvStyle {
    /// Plain fields, quoted only where needed.
    #[default]
    Clean,
    /// As TCIA's files: the `ROI mask file path` of mass rows and the `cropped image file path`
    /// of calcification rows end with an embedded newline (so they are quoted).
    Tcia,
}

/// A header name reduced for matching: lower case, `_` as space, single spaces.
fn normalise_header(name: &str) -> String {
    name.trim()
        .trim_start_matches('\u{feff}')
        .to_lowercase()
        .replace('_', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The position of each canonical column in a file's header, and the abnormality type.
struct HeaderMap {
    kind: AbnormalityType,
    /// Index in the record for each of the 14 canonical columns of `kind`.
    index: [usize; 14],
}

fn map_header(file: &Path, header: &::csv::StringRecord) -> Result<HeaderMap> {
    let found: Vec<String> = header.iter().map(normalise_header).collect();
    let has = |name: &str| found.iter().any(|f| *f == normalise_header(name));
    let kind = match (
        has("mass shape") || has("mass margins"),
        has("calc type") || has("calc distribution"),
    ) {
        (true, false) => AbnormalityType::Mass,
        (false, true) => AbnormalityType::Calcification,
        _ => {
            // Neither or both: report against the closer of the two column sets.
            let missing_of = |cols: &[&str]| {
                cols.iter()
                    .filter(|c| !has(c))
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
            };
            let (m, c) = (missing_of(&MASS_COLUMNS), missing_of(&CALC_COLUMNS));
            let (missing, cols) = if m.len() <= c.len() {
                (m, &MASS_COLUMNS)
            } else {
                (c, &CALC_COLUMNS)
            };
            let unknown = header
                .iter()
                .filter(|h| {
                    !cols
                        .iter()
                        .any(|c| normalise_header(c) == normalise_header(h))
                })
                .map(|h| h.to_string())
                .collect();
            return Err(DdsmError::Columns {
                file: file.to_path_buf(),
                missing,
                unknown,
            });
        }
    };
    let cols = columns_of(kind);
    let mut index = [0usize; 14];
    let mut missing = Vec::new();
    for (slot, col) in index.iter_mut().zip(cols.iter()) {
        match found.iter().position(|f| *f == normalise_header(col)) {
            Some(i) => *slot = i,
            None => missing.push(col.to_string()),
        }
    }
    let unknown: Vec<String> = header
        .iter()
        .filter(|h| {
            !cols
                .iter()
                .any(|c| normalise_header(c) == normalise_header(h))
        })
        .filter(|h| !h.trim().is_empty())
        .map(|h| h.to_string())
        .collect();
    if !missing.is_empty() || !unknown.is_empty() {
        return Err(DdsmError::Columns {
            file: file.to_path_buf(),
            missing,
            unknown,
        });
    }
    Ok(HeaderMap { kind, index })
}

/// The split named by a CSV file name (`..._train_set.csv`, `..._test_set.csv`).
pub fn split_from_file_name(path: &Path) -> Option<OfficialSplit> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    let train = name.contains("train");
    let test = name.contains("test");
    match (train, test) {
        (true, false) => Some(OfficialSplit::Train),
        (false, true) => Some(OfficialSplit::Test),
        _ => None,
    }
}

/// The split named by a case folder (`Mass-Training_...`, `Calc-Test_...`).
fn split_from_folder(path: &str) -> Option<OfficialSplit> {
    let folder = path.trim().split(['/', '\\']).find(|c| !c.is_empty())?;
    let word = folder.split('_').next()?.split('-').nth(1)?;
    match word {
        "Training" => Some(OfficialSplit::Train),
        "Test" => Some(OfficialSplit::Test),
        _ => None,
    }
}

/// Reads one case-description CSV. The abnormality type comes from the header (mass or calc
/// columns), the official split from the file name (or, failing that, from each row's case
/// folder).
pub fn read_case_csv(path: &Path) -> Result<Vec<CaseRecord>> {
    let data = std::fs::read(path).map_err(|e| DdsmError::io(path, e))?;
    parse_case_csv(&data, path)
}

/// Parses the bytes of a case-description CSV; `file` names it in records and errors (and its
/// name gives the split, as in [`read_case_csv`]).
pub fn parse_case_csv(data: &[u8], file: &Path) -> Result<Vec<CaseRecord>> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let file_arc = Arc::new(file.to_path_buf());
    let split_of_file = split_from_file_name(file);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(data);
    let csv_error = |row: usize, e: ::csv::Error| DdsmError::Csv {
        file: file.to_path_buf(),
        row,
        column: String::new(),
        message: e.to_string(),
    };
    let header = reader.headers().map_err(|e| csv_error(0, e))?.clone();
    let map = map_header(file, &header)?;
    let names = columns_of(map.kind);
    let mut records = Vec::new();
    for (i, result) in reader.records().enumerate() {
        let row = i + 1;
        let rec = result.map_err(|e| csv_error(row, e))?;
        // A line holding nothing but empty fields (e.g. a trailing ",,,") is skipped.
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let field = |k: usize| rec.get(map.index[k]).unwrap_or("").trim();
        let ctx = RowContext { file, row, names };
        let abnormality_type =
            AbnormalityType::from_csv(field(5)).ok_or_else(|| ctx.unknown(5, field(5)))?;
        if abnormality_type != map.kind {
            return Err(DdsmError::Csv {
                file: file.to_path_buf(),
                row,
                column: names[5].to_string(),
                message: format!(
                    "{:?} in a file with {} columns",
                    field(5),
                    map.kind.as_csv()
                ),
            });
        }
        let image_file_path = field(11).to_string();
        let split = match split_of_file.or_else(|| split_from_folder(&image_file_path)) {
            Some(s) => s,
            None => {
                return Err(DdsmError::Csv {
                    file: file.to_path_buf(),
                    row,
                    column: names[11].to_string(),
                    message: "the official split is named neither by the file name \
                              (train/test) nor by the case folder (Training/Test)"
                        .to_string(),
                })
            }
        };
        let patient_id = field(0);
        if patient_id.is_empty() || patient_id.contains(char::is_whitespace) {
            return Err(ctx.unknown(0, patient_id));
        }
        let mut categories = BTreeMap::new();
        for (k, column) in [6usize, 7].into_iter().zip(category_columns(map.kind)) {
            let parts = ctx.categorical(k, field(k), column)?;
            categories.insert(column.to_string(), parts);
        }
        records.push(CaseRecord {
            source: RecordSource {
                file: Arc::clone(&file_arc),
                row,
            },
            split,
            abnormality_type,
            patient_id: patient_id.to_string(),
            breast_density: ctx.small_number(1, field(1), 0..=4)?,
            side: Side::from_csv(field(2)).ok_or_else(|| ctx.unknown(2, field(2)))?,
            view: View::from_csv(field(3)).ok_or_else(|| ctx.unknown(3, field(3)))?,
            abnormality_id: field(4)
                .parse::<u32>()
                .ok()
                .filter(|&v| v >= 1)
                .ok_or_else(|| ctx.unknown(4, field(4)))?,
            assessment: ctx.small_number(8, field(8), 0..=5)?,
            pathology: Pathology::from_csv(field(9)).ok_or_else(|| ctx.unknown(9, field(9)))?,
            subtlety: ctx.small_number(10, field(10), 0..=5)?,
            categories,
            image_file_path,
            cropped_image_file_path: field(12).to_string(),
            roi_mask_file_path: field(13).to_string(),
        });
    }
    Ok(records)
}

/// Where a value is, for error messages.
struct RowContext<'a> {
    file: &'a Path,
    row: usize,
    names: &'a [&'static str; 14],
}

impl RowContext<'_> {
    fn unknown(&self, k: usize, value: &str) -> DdsmError {
        DdsmError::UnknownValue {
            file: self.file.to_path_buf(),
            row: self.row,
            column: self.names[k].to_string(),
            value: value.to_string(),
        }
    }

    /// `NA` or empty -> None; otherwise an integer in `range`.
    fn small_number(
        &self,
        k: usize,
        value: &str,
        range: std::ops::RangeInclusive<u8>,
    ) -> Result<Option<u8>> {
        if value.is_empty() || value == "NA" {
            return Ok(None);
        }
        value
            .parse::<u8>()
            .ok()
            .filter(|v| range.contains(v))
            .map(Some)
            .ok_or_else(|| self.unknown(k, value))
    }

    /// `NA` or empty -> no parts; otherwise the `-`-separated parts, normalised, each in the
    /// vocabulary of `column`.
    fn categorical(&self, k: usize, value: &str, column: &str) -> Result<Vec<String>> {
        if value.is_empty() || value == "NA" {
            return Ok(Vec::new());
        }
        let vocabulary = category_vocabulary(column).unwrap_or(&[]);
        let mut parts = Vec::new();
        for part in value.split('-') {
            let part = normalise_category_part(part.trim());
            if !vocabulary.contains(&part) {
                return Err(self.unknown(k, value));
            }
            if !parts.iter().any(|p: &String| p == part) {
                parts.push(part.to_string());
            }
        }
        Ok(parts)
    }
}

/// The case-description CSVs found under a dataset root, and those of the four that are not
/// there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseCsvs {
    /// The files found, in the order mass train, mass test, calc train, calc test.
    pub found: Vec<PathBuf>,
    /// The names of the expected files that were not found (a dataset with only the mass
    /// CSVs is legitimate, but callers should say so).
    pub missing: Vec<String>,
}

/// Finds the case-description CSVs of a dataset root: files named
/// `{mass,calc}_case_description_{train,test}_set.csv` in the root, `root/csv` (the Kaggle
/// copy) or `root/CBIS-DDSM`, in that order of preference, and says which of the four are
/// missing. A folder standing where one of them is expected (and no file of that name in the
/// other places) is an error naming it ([`DdsmError::NotAFile`]); no CSV at all is
/// [`DdsmError::NoImages`].
pub fn locate_case_csvs(root: &Path) -> Result<CaseCsvs> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut tried = Vec::new();
    for kind in [AbnormalityType::Mass, AbnormalityType::Calcification] {
        for split in [OfficialSplit::Train, OfficialSplit::Test] {
            let name = case_csv_name(kind, split);
            let candidates = [
                root.join(&name),
                root.join("csv").join(&name),
                root.join("CBIS-DDSM").join(&name),
            ];
            match candidates.iter().find(|p| p.is_file()) {
                Some(p) => found.push(p.clone()),
                None => {
                    if let Some(dir) = candidates.iter().find(|p| p.is_dir()) {
                        return Err(DdsmError::NotAFile {
                            path: dir.clone(),
                            expected: format!("the case-description CSV {name}"),
                        });
                    }
                    tried.extend(candidates.iter().map(|p| p.display().to_string()));
                    missing.push(name);
                }
            }
        }
    }
    if found.is_empty() {
        return Err(DdsmError::NoImages {
            root: root.to_path_buf(),
            tried: std::iter::once("no case-description CSV found".to_string())
                .chain(tried)
                .collect(),
        });
    }
    Ok(CaseCsvs { found, missing })
}

/// The case-description CSVs of a dataset root ([`locate_case_csvs`]), without the list of
/// missing ones.
pub fn find_case_csvs(root: &Path) -> Result<Vec<PathBuf>> {
    locate_case_csvs(root).map(|c| c.found)
}

/// Reads every case-description CSV of a dataset root (see [`find_case_csvs`]), in the order
/// mass train, mass test, calc train, calc test.
pub fn read_case_csvs(root: &Path) -> Result<Vec<CaseRecord>> {
    let mut all = Vec::new();
    for file in find_case_csvs(root)? {
        all.extend(read_case_csv(&file)?);
    }
    Ok(all)
}

/// Writes records as a case-description CSV with the real column set of their type (and its
/// spelling of `breast_density`), quoted only where needed; see [`write_case_csv_with`].
pub fn write_case_csv(path: &Path, records: &[CaseRecord]) -> Result<()> {
    write_case_csv_with(path, records, CsvStyle::Clean)
}

fn opt_number(v: Option<u8>) -> String {
    v.map_or_else(|| "NA".to_string(), |v| v.to_string())
}

/// Writes records as a case-description CSV in the given style. All records must have one
/// abnormality type (an empty slice writes a mass header). Reading the file back gives equal
/// records (with `source` naming the new file).
pub fn write_case_csv_with(path: &Path, records: &[CaseRecord], style: CsvStyle) -> Result<()> {
    let kind = records
        .first()
        .map_or(AbnormalityType::Mass, |r| r.abnormality_type);
    if let Some(other) = records.iter().find(|r| r.abnormality_type != kind) {
        return Err(DdsmError::Invalid {
            what: "records".into(),
            message: format!(
                "a CSV holds one abnormality type: {} at {} among {} records",
                other.abnormality_type.as_csv(),
                other.source,
                kind.as_csv()
            ),
        });
    }
    let mut out = Vec::with_capacity(records.len() * 400 + 300);
    {
        let mut writer = ::csv::WriterBuilder::new()
            .quote_style(::csv::QuoteStyle::Necessary)
            .terminator(::csv::Terminator::Any(b'\n'))
            .from_writer(&mut out);
        let to_err = |e: ::csv::Error| DdsmError::Csv {
            file: path.to_path_buf(),
            row: 0,
            column: String::new(),
            message: e.to_string(),
        };
        writer.write_record(columns_of(kind)).map_err(to_err)?;
        let [c1, c2] = category_columns(kind);
        for r in records {
            let cat = |c: &str| {
                let parts = r.category(c);
                if parts.is_empty() {
                    "NA".to_string()
                } else {
                    parts.join("-")
                }
            };
            let with_newline = |p: &str, yes: bool| {
                if yes && style == CsvStyle::Tcia {
                    format!("{p}\n")
                } else {
                    p.to_string()
                }
            };
            let is_mass = kind == AbnormalityType::Mass;
            let fields = [
                r.patient_id.clone(),
                opt_number(r.breast_density),
                r.side.as_csv().to_string(),
                r.view.as_csv().to_string(),
                r.abnormality_id.to_string(),
                r.abnormality_type.as_csv().to_string(),
                cat(c1),
                cat(c2),
                opt_number(r.assessment),
                r.pathology.as_csv().to_string(),
                opt_number(r.subtlety),
                r.image_file_path.clone(),
                with_newline(&r.cropped_image_file_path, !is_mass),
                with_newline(&r.roi_mask_file_path, is_mass),
            ];
            writer.write_record(&fields).map_err(to_err)?;
        }
        writer
            .flush()
            .map_err(|e| DdsmError::io(path.to_path_buf(), e))?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DdsmError::io(parent, e))?;
    }
    std::fs::write(path, out).map_err(|e| DdsmError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASS_HEADER: &str = "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path\n";
    const CALC_HEADER: &str = "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,calc type,calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path\n";

    fn parse(name: &str, text: &str) -> Result<Vec<CaseRecord>> {
        parse_case_csv(text.as_bytes(), Path::new(name))
    }

    #[test]
    fn quoted_newlines_na_and_combinations() {
        let text = format!(
            "{MASS_HEADER}P_00001,3,LEFT,CC,1,mass,IRREGULAR-ARCHITECTURAL_DISTORTION,SPICULATED,4,MALIGNANT,4,Mass-Training_P_00001_LEFT_CC/1.2/1.3/000000.dcm,Mass-Training_P_00001_LEFT_CC_1/1.4/1.5/000000.dcm,\"Mass-Training_P_00001_LEFT_CC_1/1.4/1.5/000001.dcm\n\"\n\
             P_00002,NA,RIGHT,MLO,2,mass,NA,ILL_DEFINED-SPICULATED,0,BENIGN_WITHOUT_CALLBACK,0,a/b,c/d,e/f\n"
        );
        let r = parse("mass_case_description_train_set.csv", &text).expect("parses");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].source.row, 1);
        assert_eq!(r[1].source.row, 2);
        assert_eq!(
            r[0].roi_mask_file_path,
            "Mass-Training_P_00001_LEFT_CC_1/1.4/1.5/000001.dcm"
        );
        assert_eq!(
            r[0].category("mass shape"),
            ["IRREGULAR", "ARCHITECTURAL_DISTORTION"]
        );
        assert_eq!(r[1].breast_density, None);
        assert!(r[1].category("mass shape").is_empty());
        assert_eq!(r[1].margins(), ["ILL_DEFINED", "SPICULATED"]);
        assert_eq!(r[1].subtlety, Some(0));
        assert_eq!(r[1].split, OfficialSplit::Train);
    }

    #[test]
    fn unknown_values_name_row_and_column() {
        let text = format!("{CALC_HEADER}P_00005,3,RIGHT,CC,1,calcification,AMORPHOUS,CLUSTERED,3,MALIGNANT,3,a,b,c\nP_00006,3,RIGHT,CC,1,calcification,LUCENT_CENTER-STARRY,CLUSTERED,3,MALIGNANT,3,a,b,c\n");
        match parse("calc_case_description_test_set.csv", &text) {
            Err(DdsmError::UnknownValue {
                row, column, value, ..
            }) => {
                assert_eq!((row, column.as_str()), (2, "calc type"));
                assert_eq!(value, "LUCENT_CENTER-STARRY");
            }
            other => panic!("{other:?}"),
        }
        let text = format!("{CALC_HEADER}P_00005,3,RIGHT,CC,1,calcification,AMORPHOUS,CLUSTERED,3,MALIGN,3,a,b,c\n");
        assert!(matches!(
            parse("calc_case_description_test_set.csv", &text),
            Err(DdsmError::UnknownValue { ref column, .. }) if column == "pathology"
        ));
        let text = format!("{CALC_HEADER}P_00005,7,RIGHT,CC,1,calcification,AMORPHOUS,CLUSTERED,3,BENIGN,3,a,b,c\n");
        assert!(matches!(
            parse("calc_case_description_test_set.csv", &text),
            Err(DdsmError::UnknownValue { ref column, ref value, .. }) if column == "breast density" && value == "7"
        ));
    }

    #[test]
    fn wrong_columns_are_listed() {
        let text = "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,colour\n";
        match parse("mass_case_description_test_set.csv", text) {
            Err(DdsmError::Columns {
                missing, unknown, ..
            }) => {
                assert_eq!(missing, ["ROI mask file path"]);
                assert_eq!(unknown, ["colour"]);
            }
            other => panic!("{other:?}"),
        }
        // A row with too few fields is a CSV error naming the row.
        let text = format!("{MASS_HEADER}P_00001,3,LEFT\n");
        assert!(matches!(
            parse("mass_case_description_test_set.csv", &text),
            Err(DdsmError::Csv { row: 1, .. })
        ));
    }

    #[test]
    fn split_from_folder_when_the_name_does_not_say() {
        let text = format!("{MASS_HEADER}P_00001,3,LEFT,CC,1,mass,OVAL,OBSCURED,4,BENIGN,4,Mass-Test_P_00001_LEFT_CC/x/y/000000.dcm,b,c\n");
        let r = parse("masses.csv", &text).expect("parses");
        assert_eq!(r[0].split, OfficialSplit::Test);
        let text = format!(
            "{MASS_HEADER}P_00001,3,LEFT,CC,1,mass,OVAL,OBSCURED,4,BENIGN,4,a/x/y/000000.dcm,b,c\n"
        );
        assert!(parse("masses.csv", &text).is_err());
    }
}
