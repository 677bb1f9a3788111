//! Pages of rows read on SQLite as one value, so that sqlx's SQLite worker thread hands a
//! page over once instead of once per row.
//!
//! sqlx runs each SQLite connection on a thread of its own and sends every row of an answer
//! through a channel to the task that asked: a page of 50 rows was 50 hand-overs between
//! threads, each a wake-up, and together they cost more than the query: a tenth to a quarter
//! of a listing's server CPU (`benches/RESULTS.md`, "SQLite pages read as one value"). Here
//! SQLite itself gathers the page's rows into one JSON array, which is decoded column by
//! column into the entity's model; PostgreSQL, which has no such thread, reads rows as they
//! are.

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ColumnType, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    FromQueryResult, IdenStatic, Iterable, Statement, TryIntoModel, Value,
    sea_query::SelectStatement,
};

use super::corrupt;

/// The rows that `q` selects, as models of `E`. `q` must select every column of `E` under
/// its own name (as `E::find()` does, with any filters, joins, order and limit), and the
/// rows come back in `q`'s order: SQLite aggregates the rows of a subquery in the order the
/// subquery yields them, and a page's subquery ends with its `ORDER BY` and `LIMIT`.
pub(crate) async fn all<E, C>(c: &C, q: &SelectStatement) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: FromQueryResult,
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
    C: ConnectionTrait,
{
    let rows = all_with::<E, C>(c, q, &[]).await?;
    Ok(rows.into_iter().map(|(model, _)| model).collect())
}

/// A page's models, each with its extra columns.
type Rows<M> = Vec<(M, Vec<Option<String>>)>;

/// As [`all`], with the text columns named `extra` (which `q` also selects, and which may
/// be null) beside each model.
pub(crate) async fn all_with<E, C>(
    c: &C,
    q: &SelectStatement,
    extra: &[&str],
) -> Result<Rows<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: FromQueryResult,
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
    C: ConnectionTrait,
{
    Ok(read::<E, C>(c, q, extra, None).await?.0)
}

/// As [`all_with`], with the number that `count` (a query of one column, `COUNT(*)`)
/// answers, in the page's own statement on SQLite.
pub(crate) async fn counted<E, C>(
    c: &C,
    q: &SelectStatement,
    extra: &[&str],
    count: &SelectStatement,
) -> Result<(Rows<E::Model>, u64), DbErr>
where
    E: EntityTrait,
    E::Model: FromQueryResult,
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
    C: ConnectionTrait,
{
    let (rows, total) = read::<E, C>(c, q, extra, Some(count)).await?;
    Ok((rows, total.unwrap_or_default()))
}

async fn read<E, C>(
    c: &C,
    q: &SelectStatement,
    extra: &[&str],
    count: Option<&SelectStatement>,
) -> Result<(Rows<E::Model>, Option<u64>), DbErr>
where
    E: EntityTrait,
    E::Model: FromQueryResult,
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
    C: ConnectionTrait,
{
    let backend = c.get_database_backend();
    let stmt = backend.build(q);
    if backend != DbBackend::Sqlite {
        let total = match count {
            Some(count) => Some(super::count_of(c, count).await?),
            None => None,
        };
        let rows = c
            .query_all_raw(stmt)
            .await?
            .iter()
            .map(|row| {
                let extras = extra
                    .iter()
                    .map(|name| row.try_get("", name))
                    .collect::<Result<_, _>>()?;
                Ok((E::Model::from_query_result(row, "")?, extras))
            })
            .collect::<Result<_, DbErr>>()?;
        return Ok((rows, total));
    }
    let columns: Vec<E::Column> = E::Column::iter().collect();
    let fields = columns
        .iter()
        .map(|col| col.as_str())
        .chain(extra.iter().copied())
        .map(|name| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // SQLite's placeholders are bare `?`s: the values go in the order the text names them.
    let mut values = Vec::new();
    let counted = match count {
        Some(count) => {
            let count = backend.build(count);
            values.extend(count.values.map(|v| v.0).unwrap_or_default());
            format!(", ({}) AS total", count.sql)
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT json_group_array(json_array({fields})) AS page{counted} FROM ({}) AS page_rows",
        stmt.sql
    );
    values.extend(stmt.values.map(|v| v.0).unwrap_or_default());
    let row = c
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| corrupt("page", "no answer from the aggregate"))?;
    let text: String = row.try_get("", "page")?;
    let total = match count {
        Some(_) => Some(u64::try_from(row.try_get::<i64>("", "total")?).unwrap_or(0)),
        None => None,
    };
    let rows: Vec<Vec<serde_json::Value>> =
        serde_json::from_str(&text).map_err(|e| corrupt("page", &e.to_string()))?;
    let rows = rows
        .into_iter()
        .map(|row| {
            if row.len() != columns.len() + extra.len() {
                return Err(corrupt("page row", &format!("{} columns", row.len())));
            }
            let mut row = row.into_iter();
            let mut model = <E::ActiveModel as ActiveModelTrait>::default();
            for (col, v) in columns.iter().zip(row.by_ref()) {
                model.try_set(*col, value(col, v)?)?;
            }
            // Text that SQLite knows to be JSON (made by a JSON function) comes as JSON.
            let extras = row
                .map(|v| match v {
                    serde_json::Value::Null => Ok(None),
                    serde_json::Value::String(s) => Ok(Some(s)),
                    v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_)) => {
                        Ok(Some(v.to_string()))
                    }
                    v => Err(corrupt("page row", &v.to_string())),
                })
                .collect::<Result<_, _>>()?;
            Ok((model.try_into_model()?, extras))
        })
        .collect::<Result<_, DbErr>>()?;
    Ok((rows, total))
}

/// The value of column `col` from its JSON form: what SQLite's `json_array` makes of what
/// sqlx stored there.
fn value<C: ColumnTrait>(col: &C, v: serde_json::Value) -> Result<Value, DbErr> {
    use serde_json::Value as J;
    let def = col.def();
    let bad = |v: &J| corrupt(col.as_str(), &v.to_string());
    Ok(match (def.get_column_type(), v) {
        (ColumnType::Boolean, J::Null) => Value::Bool(None),
        (ColumnType::Boolean, J::Number(n)) => Value::Bool(Some(n.as_i64() != Some(0))),
        (ColumnType::Integer, J::Null) => Value::Int(None),
        (ColumnType::Integer, J::Number(n)) => Value::Int(Some(
            n.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad(&J::Number(n)))?,
        )),
        (ColumnType::BigInteger, J::Null) => Value::BigInt(None),
        (ColumnType::BigInteger, J::Number(n)) => {
            Value::BigInt(Some(n.as_i64().ok_or_else(|| bad(&J::Number(n)))?))
        }
        (ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_), J::Null) => {
            Value::String(None)
        }
        (ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_), J::String(s)) => {
            Value::String(Some(s))
        }
        (ColumnType::TimestampWithTimeZone, J::Null) => Value::ChronoDateTimeUtc(None),
        (ColumnType::TimestampWithTimeZone, J::String(s)) => {
            Value::ChronoDateTimeUtc(Some(time(&s).ok_or_else(|| bad(&J::String(s)))?))
        }
        (_, v) => return Err(bad(&v)),
    })
}

/// A time as sqlx writes it to SQLite (RFC 3339), or as SQL text writes one
/// (`2026-01-01 00:00:00.5+00:00`, or without an offset for UTC).
fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%F %T%.f%:z"))
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%F %T%.f").map(|t| t.and_utc()))
        .ok()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use sea_orm::{
        ActiveValue::Set, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    };

    use super::*;
    use crate::store::{
        Store,
        entity::{membership, policy, workspace},
    };

    #[test]
    fn times_are_read_in_every_form_sqlx_and_sql_text_write() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::microseconds(123_456);
        for s in [
            "2026-01-02T03:04:05.123456Z",
            "2026-01-02T03:04:05.123456+00:00",
            "2026-01-02 03:04:05.123456+00:00",
            "2026-01-02 05:04:05.123456+02:00",
            "2026-01-02 03:04:05.123456",
        ] {
            assert_eq!(time(s), Some(t), "{s}");
        }
        assert_eq!(time("yesterday"), None);
    }

    /// A page read packed is the page sea-orm reads row by row: every column type the
    /// entities use (text, booleans both ways, integers, times to the microsecond, a null),
    /// in the query's order.
    #[tokio::test]
    async fn a_packed_page_is_the_page_read_row_by_row() {
        let (store, _dir) = Store::scratch().await;
        let c = store.conn();
        let t = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
            + chrono::Duration::microseconds(654_321);
        for (i, name) in ["zeta", "alpha", "mid"].into_iter().enumerate() {
            workspace::Entity::insert(workspace::ActiveModel {
                id: Set(format!("id-{name}")),
                name: Set(name.into()),
                display_name: Set(format!("Display \"{name}\" é\n")),
                description: Set(String::new()),
                labels: Set(r#"{"k":"v"}"#.into()),
                visibility: Set("private".into()),
                state: Set("active".into()),
                built_in: Set(i == 1),
                created_by: Set("u".into()),
                create_time: Set(t),
                update_time: Set(t + chrono::Duration::microseconds(i as i64)),
                version: Set(i64::MAX - i as i64),
            })
            .exec_without_returning(c)
            .await
            .expect("insert workspace");
            membership::Entity::insert(membership::ActiveModel {
                workspace_id: Set(format!("id-{name}")),
                is_group: Set(i == 2),
                principal: Set(format!("p-{name}")),
                role: Set("viewer".into()),
                added_by: Set("u".into()),
                create_time: Set(t),
                update_time: Set(t),
                version: Set(1),
                expire_us: Set((i == 0).then_some(42)),
                workspace_name: Set(name.into()),
            })
            .exec_without_returning(c)
            .await
            .expect("insert membership");
        }
        let q = workspace::Entity::find()
            .filter(workspace::Column::Name.ne("default"))
            .filter(workspace::Column::Name.ne("system"))
            .order_by_desc(workspace::Column::Name)
            .into_query();
        let packed = all::<workspace::Entity, _>(c, &q).await.expect("packed");
        let rows = workspace::Model::find_by_statement(c.get_database_backend().build(&q))
            .all(c)
            .await
            .expect("rows");
        assert_eq!(packed.len(), 3);
        assert_eq!(packed, rows);
        let q = membership::Entity::find()
            .filter(membership::Column::Principal.starts_with("p-"))
            .order_by_asc(membership::Column::Principal)
            .into_query();
        let packed = all::<membership::Entity, _>(c, &q).await.expect("packed");
        let rows = membership::Entity::find()
            .filter(membership::Column::Principal.starts_with("p-"))
            .order_by_asc(membership::Column::Principal)
            .all(c)
            .await
            .expect("rows");
        assert_eq!(packed.len(), 3);
        assert_eq!(packed, rows);
        // With the count in the same statement: the count's values come before the page's.
        let matching =
            || membership::Entity::find().filter(membership::Column::Principal.starts_with("p-"));
        let page = matching()
            .filter(membership::Column::Principal.gt("p-alpha"))
            .order_by_asc(membership::Column::Principal)
            .limit(1)
            .into_query();
        let count = crate::store::count_query(matching());
        let (first, total) = counted::<membership::Entity, _>(c, &page, &[], &count)
            .await
            .expect("counted");
        assert_eq!(total, 3);
        assert_eq!(first, vec![(rows[1].clone(), vec![])]);
        let none = all::<membership::Entity, _>(
            c,
            &membership::Entity::find()
                .filter(membership::Column::Principal.eq("nobody"))
                .into_query(),
        )
        .await
        .expect("empty page");
        assert!(none.is_empty());

        policy::Entity::insert(policy::ActiveModel {
            workspace_id: Set("id-alpha".into()),
            priority_min: Set(-5),
            priority_max: Set(i32::MAX),
            max_gprs: Set(7),
            max_exit_duration_us: Set(3_600_000_000),
            enforce_idle_timeout: Set(true),
            requeue_on_failure: Set(false),
            enable_auto_eviction: Set(true),
            gpu_shapes: Set(r#"["a100","h100"]"#.into()),
            max_gpu_per_gpr: Set(8),
            max_memory_per_gpr_bytes: Set(80 << 30),
            updated_by: Set("u".into()),
            update_time: Set(t),
            version: Set(3),
        })
        .exec_without_returning(c)
        .await
        .expect("insert policy");
        let q = policy::Entity::find()
            .filter(policy::Column::WorkspaceId.eq("id-alpha"))
            .into_query();
        let packed = all::<policy::Entity, _>(c, &q).await.expect("packed");
        let rows = policy::Entity::find()
            .filter(policy::Column::WorkspaceId.eq("id-alpha"))
            .all(c)
            .await
            .expect("rows");
        assert_eq!(packed.len(), 1);
        assert_eq!(packed, rows);

        // Extra text columns come beside each model, in the order named.
        let q = workspace::Entity::find()
            .column_as(workspace::Column::CreatedBy, "creator")
            .column_as(workspace::Column::Labels, "labels_again")
            .filter(workspace::Column::Name.eq("alpha"))
            .into_query();
        let with = all_with::<workspace::Entity, _>(c, &q, &["creator", "labels_again"])
            .await
            .expect("packed with extras");
        let alpha = workspace::Entity::find_by_id("id-alpha".to_owned())
            .one(c)
            .await
            .expect("read")
            .expect("alpha");
        assert_eq!(
            with,
            vec![(
                alpha,
                vec![Some("u".to_owned()), Some(r#"{"k":"v"}"#.to_owned())]
            )]
        );
    }
}
