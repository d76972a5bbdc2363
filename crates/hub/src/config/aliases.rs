//! `[[aliases]]` and `[prices]`: each alias's candidates, with prices folded in.

use std::collections::{BTreeMap, HashSet};

use super::HubConfig;
use crate::model::{Alias, Candidate};

/// Validates every alias against the known providers.
pub(super) fn aliases(
    cfg: &HubConfig,
    provider_names: &HashSet<String>,
    errs: &mut Vec<String>,
) -> BTreeMap<String, Alias> {
    let mut aliases = BTreeMap::new();
    for (i, a) in cfg.aliases.iter().enumerate() {
        let base = format!("aliases[{i}]");
        if a.name.is_empty() {
            errs.push(format!("{base}.name: must not be empty"));
        }
        if aliases.contains_key(&a.name) {
            errs.push(format!("{base}.name: duplicate alias {:?}", a.name));
        }
        if a.candidates.is_empty() {
            errs.push(format!("{base}.candidates: needs at least one candidate"));
        }
        let mut candidates = Vec::new();
        let mut weighted = 0u32;
        for (j, c) in a.candidates.iter().enumerate() {
            let cbase = format!("{base}.candidates[{j}]");
            if !provider_names.contains(&c.provider) {
                errs.push(format!(
                    "{cbase}.provider: unknown provider {:?}",
                    c.provider
                ));
            }
            if c.model.is_empty() {
                errs.push(format!("{cbase}.model: must not be empty"));
            }
            let table = cfg.prices.get(&c.model);
            let price_in = c.price_in.or(table.map(|p| p.input));
            let price_out = c.price_out.or(table.map(|p| p.output));
            for (n, v) in [("price_in", c.price_in), ("price_out", c.price_out)] {
                if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                    errs.push(format!("{cbase}.{n}: must be a non-negative number"));
                }
            }
            if let Some(w) = c.weight {
                if w == 0 || w > 100 {
                    errs.push(format!("{cbase}.weight: must be 1..=100 (percent)"));
                }
                weighted += w;
            }
            candidates.push(Candidate {
                provider: c.provider.clone(),
                model: c.model.clone(),
                priority: c.priority.unwrap_or(i32::try_from(j).unwrap_or(i32::MAX)),
                price_in,
                price_out,
                weight: c.weight,
            });
        }
        if weighted != 0 && weighted != 100 {
            errs.push(format!(
                "{base}.candidates: split weights add up to {weighted}, not 100"
            ));
        }
        let cache_ttl = super::cache::opt_in_ttl(a.cache.as_ref(), &base, errs);
        aliases.insert(
            a.name.clone(),
            Alias {
                cache_ttl,
                name: a.name.clone(),
                candidates,
                needs: crate::routing::Needs {
                    streaming: a.needs.streaming,
                    tools: a.needs.tools,
                    min_context_window: a.needs.min_context_window,
                    ..crate::routing::Needs::default()
                },
                passthrough: a.passthrough,
            },
        );
    }

    aliases
}
