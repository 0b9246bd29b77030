//! Request extractors for the prologue handlers share, decided in one place: the organization
//! the caller acts in, and the object a path names, loaded from that organization (404 when it
//! is absent or another organization's) and checked against the caller's roles (403).
//!
//! An extractor holds a state-database connection only while it runs, so a handler starts
//! holding none.

use std::{future::Future, marker::PhantomData, ops::Deref, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::{
    AppState,
    access::{Action, Kind},
    auth::Caller,
    error::ApiError,
    routes::parse_id,
    store::{self, StoreError},
};

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// Extracts the caller, then what `then` makes of them.
fn from_caller<T: 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    then: fn(Caller) -> Result<T, ApiError>,
) -> Extracted<T> {
    let caller = Caller::from_request(req, payload);
    Box::pin(async move { then(caller.await?) })
}

/// The caller and the organization they act in (403 for the deployment key as Bearer).
#[derive(Debug, Clone)]
pub struct Tenant {
    pub caller: Caller,
    pub organization_id: Uuid,
}

impl FromRequest for Tenant {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        from_caller(req, payload, |caller| Ok(Self { organization_id: caller.organization()?, caller }))
    }
}

/// A [`Tenant`] who administers their organization: the deployment key inside one, or an Admin.
#[derive(Debug, Clone)]
pub struct TenantAdmin(pub Tenant);

impl FromRequest for TenantAdmin {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        from_caller(req, payload, |caller| Ok(Self(Tenant { organization_id: caller.admin()?, caller })))
    }
}

impl Deref for TenantAdmin {
    type Target = Tenant;

    fn deref(&self) -> &Tenant {
        &self.0
    }
}

/// An object of an organization that policies guard.
pub trait OwnedObject: Sized + 'static {
    const KIND: Kind;

    /// Object `id` of organization `org`, if there is one.
    fn load(client: &impl GenericClient, org: Uuid, id: Uuid)
    -> impl Future<Output = Result<Option<Self>, StoreError>>;

    /// The custom policies the object carries.
    fn policies(&self) -> &[String];
}

/// Implements [`OwnedObject`] for a row type of the store loaded by `$get`.
macro_rules! owned_object {
    ($row:ty, $kind:expr, $get:path) => {
        impl OwnedObject for $row {
            const KIND: Kind = $kind;

            async fn load(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Option<Self>, StoreError> {
                $get(client, org, id).await
            }

            fn policies(&self) -> &[String] {
                &self.policies
            }
        }
    };
}

owned_object!(store::connections::Connection, Kind::Connection, store::connections::get);
owned_object!(store::models::Model, Kind::Model, store::models::get);
owned_object!(store::syncs::ModelSync, Kind::Sync, store::syncs::get);
owned_object!(store::bulk_syncs::BulkSync, Kind::BulkSync, store::bulk_syncs::get);
owned_object!(store::event_sources::EventSource, Kind::EventSource, store::event_sources::get);

/// Loads object `id` of the caller's organization for the caller to do `action` to: 404 when
/// there is none (other organizations' objects do not exist for the caller), 403 when the
/// caller's roles do not allow `action` on it.
pub async fn authorized<T: OwnedObject>(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    action: Action,
) -> Result<T, ApiError> {
    let org = caller.organization()?;
    let object =
        T::load(&state.pool.get().await?, org, id).await?.ok_or_else(|| ApiError::not_found(T::KIND.as_str()))?;
    caller.check(action, T::KIND, object.policies())?;
    Ok(object)
}

/// What a handler does to the object its path names.
pub trait Permission {
    const ACTION: Action;
}

/// The actions an [`Authorized`] object is checked for.
pub mod can {
    use super::{Action, Permission};

    pub struct Read;
    pub struct Update;
    pub struct Delete;
    pub struct Run;

    impl Permission for Read {
        const ACTION: Action = Action::Read;
    }
    impl Permission for Update {
        const ACTION: Action = Action::Update;
    }
    impl Permission for Delete {
        const ACTION: Action = Action::Delete;
    }
    impl Permission for Run {
        const ACTION: Action = Action::Run;
    }
}

/// The object of kind `T` the path names (`{<kind>_id}`, else `{id}`), which the caller may do
/// `A` to (see [`authorized`]). A malformed id names no object: 404.
pub struct Authorized<T, A> {
    pub object: T,
    pub caller: Caller,
    action: PhantomData<A>,
}

impl<T, A> Deref for Authorized<T, A> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.object
    }
}

impl<T: OwnedObject, A: Permission + 'static> FromRequest for Authorized<T, A> {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let caller = caller.await?;
            caller.organization()?;
            let kind = T::KIND.as_str();
            let named = req.match_info().get(&format!("{kind}_id")).or_else(|| req.match_info().get("id"));
            let id = parse_id(named.unwrap_or_default(), kind)?;
            let state =
                req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::unauthorized("not configured"))?;
            let object = authorized(state, &caller, id, A::ACTION).await?;
            Ok(Self { object, caller, action: PhantomData })
        })
    }
}
