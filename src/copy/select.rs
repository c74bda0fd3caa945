//! Which entries a copy takes ([`Selection`]): a tree of names, each
//! directory saying what becomes of its entries.

use super::*;

/// What [`CopyOptions::select`] says about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// Copy it, and everything below it.
    All,
    /// A directory: copy it, and ask about each of its entries.
    Descend,
    /// Leave it (and everything below it) out.
    Skip,
}

/// Which entries a copy takes, as a tree of names: each directory it
/// descends into says what becomes of each of its entries, listed by
/// name or not. Looking an entry up costs one lookup in its directory's
/// node, whatever the depth, and the tree holds one name a node.
#[derive(Debug, Clone)]
pub struct Selection {
    nodes: Vec<SelectNode>,
}

#[derive(Debug, Clone)]
pub(super) struct SelectNode {
    what: Select,
    /// For entries of a directory (`Descend`) not listed in `children`.
    unlisted: Select,
    children: HashMap<OsString, usize>,
}

impl Selection {
    /// Descends into the root, doing `unlisted` with every entry not
    /// listed by [`Selection::set`].
    pub fn new(unlisted: Select) -> Selection {
        Selection {
            nodes: vec![SelectNode {
                what: Select::Descend,
                unlisted,
                children: HashMap::new(),
            }],
        }
    }

    /// Says `what` to do with the entry at `names` below the root. The
    /// directories on the way are descended into, doing `unlisted` with
    /// their other entries (unless they were set already); so is the entry
    /// itself when `what` is `Descend`. `All` wins over `Descend`.
    pub fn set(&mut self, names: &[&OsStr], what: Select, unlisted: Select) {
        let mut node = 0;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            node = match self.nodes[node].children.get(*name) {
                Some(&child) => child,
                None => {
                    self.nodes.push(SelectNode {
                        what: Select::Descend,
                        unlisted,
                        children: HashMap::new(),
                    });
                    let child = self.nodes.len() - 1;
                    self.nodes[node].children.insert(name.to_os_string(), child);
                    child
                }
            };
            if last {
                let n = &mut self.nodes[node];
                n.what = match (n.what, what) {
                    (Select::All, _) | (_, Select::All) => Select::All,
                    (_, w) => w,
                };
            }
        }
    }

    /// What to do with `name` in the directory `node`, and its own node
    /// when it is listed.
    pub(super) fn lookup(&self, node: usize, name: &OsStr) -> (Select, Option<usize>) {
        let n = &self.nodes[node];
        match n.children.get(name) {
            Some(&child) => (self.nodes[child].what, Some(child)),
            None => (n.unlisted, None),
        }
    }

    /// The entries listed in the directory `node`, with their nodes.
    pub(super) fn children(&self, node: usize) -> impl Iterator<Item = (&OsStr, usize)> {
        self.nodes[node]
            .children
            .iter()
            .map(|(name, &child)| (name.as_os_str(), child))
    }

    /// Every listed entry below the root with what is done with it, in
    /// path order: what two selections are compared by.
    pub fn listed(&self) -> Vec<(std::path::PathBuf, Select)> {
        let mut out = Vec::new();
        let mut todo = vec![(std::path::PathBuf::new(), 0)];
        while let Some((path, node)) = todo.pop() {
            for (name, child) in self.children(node) {
                let path = path.join(name);
                out.push((path.clone(), self.nodes[child].what));
                todo.push((path, child));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether the directory at `names` is descended into.
    pub fn descends(&self, names: &[&OsStr]) -> bool {
        let mut node = 0;
        for name in names {
            match self.nodes[node].children.get(*name) {
                Some(&child) => node = child,
                None => return false,
            }
        }
        self.nodes[node].what == Select::Descend
    }
}
