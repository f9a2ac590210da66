//! cpu and memory requests and limits, and Kubernetes quantities ("500m",
//! "1.5Gi", "129e6") read exactly.

use std::collections::BTreeMap;
use std::str::FromStr;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{model, Admission, ManifestError, NO_API_SERVER};

/// cpu millicores, memory bytes, hugepages by page size (name, bytes).
type Amounts = (Option<u64>, Option<i64>, BTreeMap<u64, (String, u64)>);

impl Admission<'_> {
    pub(super) fn resources(
        &mut self,
        field: &str,
        requirements: Option<k8s::ResourceRequirements>,
    ) -> Result<model::Resources, ManifestError> {
        let k8s::ResourceRequirements {
            claims,
            limits,
            requests,
        } = requirements.unwrap_or_default();
        if claims.is_some_and(|list| !list.is_empty()) {
            return Err(self.unsupported(format!("{field}.resources.claims"), NO_API_SERVER));
        }
        let (cpu_limit, memory_limit, huge_limits) = self.amounts(field, "limits", limits)?;
        let (cpu_request, memory_request, huge_requests) =
            self.amounts(field, "requests", requests)?;
        // Kubernetes defaults a missing request to the limit.
        let cpu_request = cpu_request.or(cpu_limit);
        let memory_request = memory_request.or(memory_limit);
        if cpu_request.zip(cpu_limit).is_some_and(|(r, l)| r > l) {
            return Err(self.invalid(
                format!("{field}.resources.requests.cpu"),
                "must be less than or equal to the cpu limit",
            ));
        }
        if memory_request.zip(memory_limit).is_some_and(|(r, l)| r > l) {
            return Err(self.invalid(
                format!("{field}.resources.requests.memory"),
                "must be less than or equal to the memory limit",
            ));
        }
        let resources = model::Resources {
            cpu_limit_millis: cpu_limit,
            memory_limit_bytes: memory_limit,
            cpu_request_millis: cpu_request,
            memory_request_bytes: memory_request,
            hugepage_limits: huge_limits
                .iter()
                .map(|(size, (_, bytes))| (*size, *bytes))
                .collect(),
        };
        // ValidateResourceRequirements: a hugepages request must equal its
        // limit (a missing request is defaulted to it), and hugepages come
        // with cpu or memory.
        for (size, (name, bytes)) in &huge_requests {
            if huge_limits.get(size).map(|(_, limit)| limit) != Some(bytes) {
                return Err(self.invalid(
                    format!("{field}.resources.requests.{name}"),
                    "must be equal to the hugepages limit",
                ));
            }
        }
        if let Some((_, (name, _))) = huge_limits.iter().next() {
            if !resources.has_cpu_or_memory() {
                return Err(self.invalid(
                    format!("{field}.resources.limits.{name}"),
                    "HugePages require cpu or memory",
                ));
            }
        }
        Ok(resources)
    }

    /// cpu, memory and hugepages (page size -> (resource name, bytes)) of
    /// one of limits/requests.
    fn amounts(
        &mut self,
        field: &str,
        kind: &str,
        amounts: Option<BTreeMap<String, Quantity>>,
    ) -> Result<Amounts, ManifestError> {
        let (mut cpu, mut memory, mut huge) = (None, None, BTreeMap::new());
        for (name, quantity) in amounts.unwrap_or_default() {
            let at = format!("{field}.resources.{kind}.{name}");
            match name.as_str() {
                "cpu" => cpu = Some(self.millicores(&at, &quantity)?),
                "memory" => memory = Some(self.bytes(&at, &quantity)?),
                other if other.starts_with("hugepages-") => {
                    let size = Quantity(other["hugepages-".len()..].to_string());
                    let page = self
                        .bytes(&at, &size)
                        .ok()
                        .filter(|b| *b > 0 && (*b as u64).is_power_of_two())
                        .ok_or_else(|| self.invalid(&at, "invalid hugepage size"))?;
                    let bytes = self.bytes(&at, &quantity)?;
                    if bytes < 0 {
                        return Err(self.invalid(&at, "must be greater than or equal to 0"));
                    }
                    huge.insert(page as u64, (name.clone(), bytes as u64));
                }
                _ => self.warn(&at, "ignored (not enforced)"),
            }
        }
        Ok((cpu, memory, huge))
    }

    pub(super) fn amount(&self, field: &str, quantity: &Quantity) -> Result<Amount, ManifestError> {
        let amount: Amount = quantity
            .0
            .parse()
            .map_err(|()| self.invalid(field, format!("invalid quantity {:?}", quantity.0)))?;
        if amount.negative && amount.numerator != 0 {
            return Err(self.invalid(field, "must be greater than or equal to 0"));
        }
        Ok(amount)
    }

    fn millicores(&self, field: &str, quantity: &Quantity) -> Result<u64, ManifestError> {
        self.amount(field, quantity)?
            .ceil_scaled(1000)
            .and_then(|millis| u64::try_from(millis).ok())
            .ok_or_else(|| self.invalid(field, format!("quantity {:?} is too large", quantity.0)))
    }

    pub(super) fn bytes(&self, field: &str, quantity: &Quantity) -> Result<i64, ManifestError> {
        self.amount(field, quantity)?
            .ceil_scaled(1)
            .and_then(|bytes| i64::try_from(bytes).ok())
            .ok_or_else(|| self.invalid(field, format!("quantity {:?} is too large", quantity.0)))
    }
}

/// A Kubernetes quantity as an exact fraction: "1.5Gi", "500m", "129e6".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Amount {
    pub(super) negative: bool,
    pub(super) numerator: u128,
    pub(super) denominator: u128,
}

impl Amount {
    /// value × scale, rounded up, as Kubernetes rounds MilliValue() and Value().
    fn ceil_scaled(&self, scale: u128) -> Option<u128> {
        Some(
            self.numerator
                .checked_mul(scale)?
                .div_ceil(self.denominator),
        )
    }

    /// value × scale when that is a whole number.
    pub(super) fn exact_scaled(&self, scale: u128) -> Option<u128> {
        let scaled = self.numerator.checked_mul(scale)?;
        (scaled % self.denominator == 0).then(|| scaled / self.denominator)
    }
}

impl FromStr for Amount {
    type Err = ();

    /// `<sign>? <digits>(.<digits>)? <suffix>`, the suffix one of the binary
    /// (Ki … Ei), decimal (n u m "" k M G T P E) or exponent (e3, E-2) forms.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(split);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(());
        }
        let mut numerator: u128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            numerator = numerator
                .checked_mul(10)
                .and_then(|n| n.checked_add(u128::from(digit - b'0')))
                .ok_or(())?;
        }
        let fraction_digits = u32::try_from(fraction.len()).map_err(|_| ())?;
        let mut denominator = 10u128.checked_pow(fraction_digits).ok_or(())?;
        let (base, exponent): (u128, i32) = match suffix {
            "" => (10, 0),
            "n" => (10, -9),
            "u" => (10, -6),
            "m" => (10, -3),
            "k" => (10, 3),
            "M" => (10, 6),
            "G" => (10, 9),
            "T" => (10, 12),
            "P" => (10, 15),
            "E" => (10, 18),
            "Ki" => (2, 10),
            "Mi" => (2, 20),
            "Gi" => (2, 30),
            "Ti" => (2, 40),
            "Pi" => (2, 50),
            "Ei" => (2, 60),
            exponent if exponent.starts_with(['e', 'E']) => {
                let digits = &exponent[1..];
                let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(());
                }
                (10, digits.parse().map_err(|_| ())?)
            }
            _ => return Err(()),
        };
        let factor = base.checked_pow(exponent.unsigned_abs()).ok_or(())?;
        if exponent >= 0 {
            numerator = numerator.checked_mul(factor).ok_or(())?;
        } else {
            denominator = denominator.checked_mul(factor).ok_or(())?;
        }
        Ok(Self {
            negative,
            numerator,
            denominator,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::admission::tests::*;

    #[test]
    fn quantities() {
        let cpu = [
            ("500m", 500),
            ("1", 1000),
            ("0.5", 500),
            ("2.5", 2500),
            ("0.0001", 1),
            ("100u", 1),
            ("+2", 2000),
            ("1e3", 1_000_000),
            (".5", 500),
            ("1.", 1000),
            ("0", 0),
            ("-0", 0),
        ];
        for (text, millis) in cpu {
            let amount: Amount = text.parse().unwrap();
            assert_eq!(amount.ceil_scaled(1000), Some(millis), "{text}");
        }
        let memory = [
            ("128Mi", 128u128 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("500M", 500_000_000),
            ("1e6", 1_000_000),
            ("1E6", 1_000_000),
            ("129e6", 129_000_000),
            ("1e+3", 1000),
            ("1e-3", 1),
            ("123456", 123_456),
            ("1500m", 2),
            ("1k", 1000),
            ("1Ki", 1024),
            (".5Ki", 512),
            ("1T", 1_000_000_000_000),
            ("1Ti", 1 << 40),
            ("1P", 1_000_000_000_000_000),
            ("1Pi", 1 << 50),
            ("1E", 1_000_000_000_000_000_000),
            ("1Ei", 1 << 60),
            ("1n", 1),
        ];
        for (text, bytes) in memory {
            let amount: Amount = text.parse().unwrap();
            assert_eq!(amount.ceil_scaled(1), Some(bytes), "{text}");
        }
        let negative: Amount = "-1Mi".parse().unwrap();
        assert!(negative.negative);
        for text in [
            "", ".", "1.2.3", "Mi", "1mi", "1K", "1e", "1e1.5", "--1", "1 Mi", "abc", "1Gi ",
            "1e+", "+", "1ee3", "0x10",
        ] {
            assert_eq!(text.parse::<Amount>(), Err(()), "{text:?}");
        }
        let huge: Amount = "1e40".parse().unwrap_or(Amount {
            negative: false,
            numerator: u128::MAX,
            denominator: 1,
        });
        assert_eq!(huge.ceil_scaled(1000), None);
    }

    #[test]
    fn quantities_written_as_yaml_numbers() {
        let text = app(
            ", resources: {limits: {cpu: 2, memory: 1e6}, requests: {cpu: 0.5, memory: 123456}}",
        );
        let resources = admit_ok(&text).pod.containers[0].resources.clone();
        assert_eq!(
            resources,
            model::Resources {
                cpu_limit_millis: Some(2000),
                memory_limit_bytes: Some(1_000_000),
                cpu_request_millis: Some(500),
                memory_request_bytes: Some(123_456),
                ..Default::default()
            }
        );
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (app(", resources: {limits: {memory: 12Q}}"), "web.yaml: spec.containers[0].resources.limits.memory: invalid quantity \"12Q\""),
            (app(", resources: {requests: {cpu: 1.2.3}}"), "web.yaml: spec.containers[0].resources.requests.cpu: invalid quantity \"1.2.3\""),
            (app(", resources: {limits: {memory: \"-1\"}}"), "web.yaml: spec.containers[0].resources.limits.memory: must be greater than or equal to 0"),
            (app(", resources: {limits: {memory: 9Ei}}"), "web.yaml: spec.containers[0].resources.limits.memory: quantity \"9Ei\" is too large"),
            (app(", resources: {limits: {cpu: 1}, requests: {cpu: 2}}"), "web.yaml: spec.containers[0].resources.requests.cpu: must be less than or equal to the cpu limit"),
            (app(", resources: {limits: {memory: 1Mi}, requests: {memory: 1Gi}}"), "web.yaml: spec.containers[0].resources.requests.memory: must be less than or equal to the memory limit"),
            (app(", resources: {claims: [{name: gpu}]}"), "web.yaml: spec.containers[0].resources.claims: unsupported: no API server"),
            // ValidateResourceRequirements' hugepages rules.
            (app(", resources: {requests: {hugepages-2Mi: 2Mi, memory: 1Mi}}"), "web.yaml: spec.containers[0].resources.requests.hugepages-2Mi: must be equal to the hugepages limit"),
            (app(", resources: {limits: {hugepages-2Mi: 4Mi, memory: 8Mi}, requests: {hugepages-2Mi: 2Mi}}"), "web.yaml: spec.containers[0].resources.requests.hugepages-2Mi: must be equal to the hugepages limit"),
            (app(", resources: {limits: {hugepages-2Mi: 4Mi}}"), "web.yaml: spec.containers[0].resources.limits.hugepages-2Mi: HugePages require cpu or memory"),
            (app(", resources: {limits: {hugepages-3k: 3k, memory: 8Mi}}"), "web.yaml: spec.containers[0].resources.limits.hugepages-3k: invalid hugepage size"),
        ];
        assert_refusals(&cases);
    }

    #[test]
    fn hugepages_limits_are_kept_by_page_size() {
        let pod = admit_ok(&app(
            ", resources: {limits: {hugepages-2Mi: 4Mi, hugepages-1Gi: 1Gi, memory: 8Mi}, \
             requests: {hugepages-2Mi: 4Mi}}",
        ))
        .pod;
        let limits = &pod.containers[0].resources.hugepage_limits;
        assert_eq!(
            limits.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            vec![(2 << 20, 4 << 20), (1 << 30, 1 << 30)]
        );
    }

    #[test]
    fn warnings_name_the_field() {
        let cases = [(
            app(", resources: {limits: {ephemeral-storage: 1Gi}}"),
            "web.yaml: spec.containers[0].resources.limits.ephemeral-storage: ignored",
        )];
        assert_warnings(&cases);
    }
}
