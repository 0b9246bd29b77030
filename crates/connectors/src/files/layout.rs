//! Where tables live under a files connection's URL.
//!
//! Table `dataset.table` lives in `dataset/table/`. Each execution's copy of it is a directory
//! named by the execution id, holding one `part-{partition}.parquet` per partition and, once
//! the copy is swapped in, `_manifest.json`; `dataset/table/_latest.json` names the manifest
//! of the copy readers read. Readers read `_latest.json`, then the manifest, then its files,
//! so they never see a copy being written.

use object_store::path::Path;
use uuid::Uuid;

/// Separates a table's name from the execution in the name of an execution's copy.
const COPY: char = '@';
/// The file naming the latest manifest, in a table's directory.
const LATEST: &str = "_latest.json";
/// An execution's manifest, in its copy's directory.
const MANIFEST: &str = "_manifest.json";

/// A table or one execution's copy of it, from the name the engine uses: `dataset.table`, or
/// `dataset.table@{execution}` for a copy (see [`Place::copy_name`]).
#[derive(Debug, Clone)]
pub(super) struct Place {
    table: Path,
    execution: Option<Uuid>,
}

impl Place {
    /// The place `name` names under `root`.
    pub fn parse(root: &Path, name: &str) -> Self {
        let (table, execution) = match name.rsplit_once(COPY).map(|(t, e)| (t, Uuid::parse_str(e))) {
            Some((table, Ok(execution))) => (table, Some(execution)),
            _ => (name, None),
        };
        let (dataset, table) = table.split_once('.').unwrap_or(("public", table));
        Self { table: root.clone().join(dataset).join(table), execution }
    }

    /// The name of execution `execution`'s copy of `table`.
    pub fn copy_name(table: &str, execution: Uuid) -> String {
        format!("{table}{COPY}{}", execution.simple())
    }

    /// The execution whose copy this is; `None` for the table readers see.
    pub fn execution(&self) -> Option<Uuid> {
        self.execution
    }

    /// The table's directory, every copy inside.
    pub fn table_dir(&self) -> &Path {
        &self.table
    }

    /// The directory of everything here: the copy's, or the whole table's.
    pub fn dir(&self) -> Path {
        match self.execution {
            Some(execution) => self.copy_dir(execution),
            None => self.table.clone(),
        }
    }

    /// The directory of execution `execution`'s copy of the table.
    pub fn copy_dir(&self, execution: Uuid) -> Path {
        self.table.clone().join(execution.to_string())
    }

    /// The file naming the latest manifest.
    pub fn latest(&self) -> Path {
        self.table.clone().join(LATEST)
    }

    /// The manifest of execution `execution`'s copy.
    pub fn manifest(&self, execution: Uuid) -> Path {
        self.copy_dir(execution).join(MANIFEST)
    }

    /// The file of partition `marker` in this copy; `None` for a table.
    pub fn part(&self, marker: Uuid) -> Option<Path> {
        let execution = self.execution?;
        Some(self.copy_dir(execution).join(format!("part-{marker}.parquet").as_str()))
    }
}

/// Whether `path` is a partition's file.
pub(super) fn is_part(path: &Path) -> bool {
    path.filename().is_some_and(|name| name.starts_with("part-") && name.ends_with(".parquet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_directories() {
        let root = Path::from("exports");
        let execution = Uuid::new_v4();
        let table = Place::parse(&root, "public.users");
        assert_eq!((table.dir().as_ref(), table.execution()), ("exports/public/users", None));
        assert_eq!(table.latest().as_ref(), "exports/public/users/_latest.json");
        assert_eq!(table.part(execution), None, "a table has no parts of its own");
        let copy = Place::parse(&root, &Place::copy_name("public.users", execution));
        assert_eq!(copy.execution(), Some(execution));
        assert_eq!(copy.dir().to_string(), format!("exports/public/users/{execution}"));
        let marker = Uuid::new_v4();
        let part = copy.part(marker).expect("a copy's part");
        assert_eq!(part.to_string(), format!("exports/public/users/{execution}/part-{marker}.parquet"));
        assert!(is_part(&part) && !is_part(&copy.manifest(execution)));
    }

    #[test]
    fn odd_names_stay_inside_their_directory() {
        let place = Place::parse(&Path::default(), "a/b.c@d");
        assert_eq!(place.execution(), None);
        assert_eq!(place.table_dir().parts().count(), 2, "{}", place.table_dir());
    }
}
