//! The four services of shop, by one name each.

use std::fmt;

/// A service of shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The WebSocket gateway: clients' commands in, live order and product
    /// views out.
    Gateway,
    /// Orders and their saga.
    Order,
    /// Products, quantities and reservations.
    Stock,
    /// Checkout sessions, provider webhooks, refunds.
    Payment,
}

impl Service {
    /// Every service, in the order a process starts them: stock first (it
    /// publishes the catalogue the gateway shows), the gateway last.
    pub const ALL: [Service; 4] = [
        Service::Stock,
        Service::Order,
        Service::Payment,
        Service::Gateway,
    ];

    /// The service's name: its command (`shop-backend order`), its Kafka
    /// consumer group (before any topic prefix), the name of its outbox
    /// relay, its database file in embedded mode, and its label in logs
    /// and health checks.
    pub fn name(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::Order => "order",
            Service::Stock => "stock",
            Service::Payment => "payment",
        }
    }

    /// The consumer group the service's instances share.
    pub fn group(self) -> &'static str {
        self.name()
    }

    /// The PostgreSQL schema of the service's tables in distributed mode
    /// (the gateway's holds its customer-orders projection).
    pub fn schema(self) -> &'static str {
        match self {
            Service::Gateway => "shop_gateway",
            Service::Order => "shop_order",
            Service::Stock => "shop_stock",
            Service::Payment => "shop_payment",
        }
    }

    /// The port a distributed process of this service listens on by
    /// default (the gateway's is also that of `shop-backend all`).
    pub fn default_port(self) -> u16 {
        match self {
            Service::Gateway => 8080,
            Service::Order => 8081,
            Service::Stock => 8082,
            Service::Payment => 8083,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_its_own_name_group_port_and_schema() {
        let names: std::collections::HashSet<_> = Service::ALL.iter().map(|s| s.name()).collect();
        let ports: std::collections::HashSet<_> =
            Service::ALL.iter().map(|s| s.default_port()).collect();
        assert_eq!((names.len(), ports.len()), (4, 4));
        assert_eq!(Service::Order.group(), "order");
        assert_eq!(Service::Stock.schema(), "shop_stock");
        assert_eq!(Service::Gateway.schema(), "shop_gateway");
        assert_eq!(Service::Payment.to_string(), "payment");
    }
}
